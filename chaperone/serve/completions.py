"""One chat completion: the request read and checked, the guarded turn run within the time limit, and the
answer sent whole or as a stream. A stream is written after the verdict, with SSE comments keeping the
connection open while the reviewer decides; under a chunked-review policy, each approved prefix is sent as
it is released, and text withdrawn after it was sent ends the stream with the fallback.

The turn runs as its own task, raced against the request's time limit, the server stopping and (for a
whole answer) the client going away. Whichever comes first, the request stops its turn, puts the reason on
the record and closes its transcript itself: nobody closes a conversation under a running turn."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, StreamingResponse
from loguru import logger

from chaperone.engine.events import Released
from chaperone.serve.access import ServerState, State
from chaperone.serve.config import ServeConfig
from chaperone.serve.service import GuardedService, ServedConversation, ServedResult
from chaperone.serve.wire import ChatRequest, RequestError, chunk, completion, error_body, parse_request, pieces

INTERNAL_ERROR = "internal error; the server log has the details"
DISCONNECT_POLL_S = 0.25  # how often a whole answer's request looks whether its client is still there
TURN_STOP_WAIT_S = 10.0  # how long a cancelled turn may take to stop before its transcript is closed anyway

Disconnected = Callable[[], Awaitable[bool]]


async def turn_deadline(state: State) -> float:
    """A dependency resolved before the key is checked: the time limit runs from the request's arrival."""
    return asyncio.get_running_loop().time() + state.config.limits.request_timeout_s


def chaperone_headers(served: ServedConversation, result: ServedResult | None = None) -> dict[str, str]:
    h = {"X-Chaperone-Transcript-Id": served.id, "X-Chaperone-Policy": served.policy}
    if served.request.ignored:
        h["X-Chaperone-Ignored-Fields"] = ",".join(served.request.ignored)
    if result is not None:
        h.update(
            {
                "X-Chaperone-Outcome": result.outcome,
                "X-Chaperone-Revisions": str(result.revisions),
                "X-Chaperone-Categories": ",".join(result.categories),
            }
        )
    return h


async def _read_json(request: Request, cap: int) -> Any:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > cap:
        raise RequestError(413, f"request body too large: {declared} bytes (at most {cap})", code="request_too_large")
    body = bytearray()
    async for part in request.stream():  # a body sent without (or lying about) its length stops at the cap
        body += part
        if len(body) > cap:
            raise RequestError(413, f"request body too large (at most {cap} bytes)", code="request_too_large")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(400, f"the request body is not valid JSON ({exc})", code="invalid_json") from None


async def read_chat_request(request: Request, config: ServeConfig) -> ChatRequest:
    return parse_request(
        await _read_json(request, config.limits.max_body_bytes),
        ignored_fields=set(config.ignored_fields),
        max_messages=config.limits.max_messages,
        max_message_tokens=config.limits.max_message_tokens,
        system_policy=config.client_system_messages,
    )


@dataclass(frozen=True)
class _Stop:
    """Why a turn was stopped from outside: the transcript's error record and what the client gets."""

    record: str
    error: RequestError | None  # None: the request's own task was cancelled, nobody to answer


def _timed_out(served: ServedConversation, limit: float) -> _Stop:
    return _Stop(
        f"request time limit of {limit:g} s exceeded; nothing was delivered",
        RequestError(
            504,
            f"the guarded answer took longer than this server's limit of {limit:g} s; "
            f"nothing was delivered (transcript {served.id})",
            kind="server_error",
            code="request_timeout",
        ),
    )


def _shut_down(served: ServedConversation) -> _Stop:
    return _Stop(
        "the server shut down before the request finished; nothing was delivered",
        RequestError(
            503,
            f"the server is shutting down and stopped this request before its answer was ready; "
            f"nothing was delivered (transcript {served.id})",
            kind="server_error",
            code="server_shutting_down",
        ),
    )


def _client_gone(served: ServedConversation) -> _Stop:
    return _Stop(
        "the client went away before the answer was ready; nothing was delivered",
        # Nobody reads it; 499 is the log's word for "client closed request".
        RequestError(499, f"the client went away (transcript {served.id})", code="client_closed_request"),
    )


_CANCELLED = _Stop("the request was cancelled (client gone or server shutting down)", None)


async def _gated(service: GuardedService, served: ServedConversation) -> ServedResult:
    async with service.gate:  # waits its turn among all keys' requests (max_concurrent_requests)
        return await served.run()


async def _race(
    turn: asyncio.Future[ServedResult],
    service: GuardedService,
    served: ServedConversation,
    deadline: float,
    disconnected: Disconnected | None,
) -> _Stop | None:
    """Wait for the turn; None when it ended, otherwise why it must stop. A turn that has ended wins a tie."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.ensure_future(service.stopping.wait())
    try:
        while True:
            left = deadline - loop.time()
            if left > 0:
                wait = min(left, DISCONNECT_POLL_S) if disconnected is not None else left
                await asyncio.wait([turn, stopping], timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            if turn.done():
                return None
            if stopping.done():
                return _shut_down(served)
            if loop.time() >= deadline:
                return _timed_out(served, service.config.limits.request_timeout_s)
            if disconnected is not None and await disconnected():
                return _client_gone(served)
    finally:
        stopping.cancel()


async def _wind_up(
    service: GuardedService, served: ServedConversation, turn: asyncio.Future[ServedResult], stop: _Stop | None
) -> None:
    """The end of every request's turn, in this order: the turn stopped (when it was stopped from outside),
    the reason on the record, the transcript closed and counted out. Runs shielded: it finishes even when
    the request's own task is cancelled meanwhile."""
    outcome = None
    if stop is not None or not turn.done():
        outcome = "interrupted"
        turn.cancel()  # the chat records the cancelled turn (error, withheld, turn_finished) as it stops
        await asyncio.wait([turn], timeout=TURN_STOP_WAIT_S)
        if not turn.done():
            logger.warning("the turn of {} did not stop in {:g} s; closing it anyway", served.file, TURN_STOP_WAIT_S)
        elif not turn.cancelled() and turn.exception() is not None:
            logger.opt(exception=turn.exception()).warning("the stopped turn of {} failed", served.file)
        served.record_failure(stop.record if stop is not None else "the request failed before its turn finished")
    await service.finish(served, outcome)


async def _run_turn(
    service: GuardedService, served: ServedConversation, deadline: float, disconnected: Disconnected | None = None
) -> ServedResult:
    """The turn within the time limit (a 504 past it), stopped when the server stops (503) or, given
    `disconnected`, when the client goes away; the transcript is closed however the turn ends."""
    turn = asyncio.ensure_future(_gated(service, served))
    stop: _Stop | None = None
    try:
        stop = await _race(turn, service, served, deadline, disconnected)
        if stop is not None:
            assert stop.error is not None
            raise stop.error
        return turn.result()
    except asyncio.CancelledError:
        stop = stop or _CANCELLED
        raise
    finally:
        await asyncio.shield(_wind_up(service, served, turn, stop))


async def answer(
    service: GuardedService, served: ServedConversation, deadline: float, disconnected: Disconnected | None = None
) -> ServedResult:
    """The approved answer or the policy's fallback; a RequestError (504, 503, 502) when there is neither."""
    result = await _run_turn(service, served, deadline, disconnected)
    logger.info(
        "{} key={} model={} → {} after {} revision(s) {}",
        served.file,
        served.key_name,
        served.request.model,
        result.outcome,
        result.revisions,
        ",".join(result.categories),
    )
    if result.outcome == "error":
        raise RequestError(
            502,
            f"{result.reason or 'a model call failed'}; nothing was delivered (transcript {served.id})",
            kind="server_error",
            code="upstream_failed",
        )
    return result


async def respond_whole(
    state: ServerState,
    served: ServedConversation,
    deadline: float,
    admission: contextlib.ExitStack,
    disconnected: Disconnected | None = None,
) -> JSONResponse:
    """The answer as one chat.completion; the key's admission is released as soon as the turn ends (a client
    that goes away, seen through `disconnected`, ends it at once)."""
    with admission:
        try:
            result = await answer(state.service, served, deadline, disconnected)
        except RequestError as err:
            err.headers.update(chaperone_headers(served))  # a 502 or 504 still names its transcript
            raise
    body = completion(
        f"chatcmpl-{served.id}",
        served.request.model,
        result.content,
        result.finish_reason,
        result.usage,
        served.extra(result),
    )
    return JSONResponse(body, headers=chaperone_headers(served, result))


def respond_streamed(
    state: ServerState, served: ServedConversation, deadline: float, admission: contextlib.ExitStack
) -> StreamingResponse:
    # Approved prefixes (chunked review) as the turn releases them; a stream cannot take text back, so the
    # turn ends with the fallback when shown text is withdrawn (Conversation.stream_to).
    released: asyncio.Queue[Released] = asyncio.Queue()
    served.stream_to(functools.partial(_keep_released, released))
    # The turn runs as its own task, which also releases the admission: a client that goes away before
    # the stream starts still gets its turn finished, recorded and counted out.
    task = asyncio.ensure_future(answer(state.service, served, deadline))
    task.add_done_callback(functools.partial(_turn_done, admission))
    return StreamingResponse(
        _events(served, task, state.config.stream_keepalive_s, released),
        media_type="text/event-stream",
        headers={**chaperone_headers(served), "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _keep_released(queue: asyncio.Queue[Released], event: Any) -> None:
    if isinstance(event, Released):
        queue.put_nowait(event)


def _turn_done(admission: contextlib.ExitStack, task: asyncio.Future[ServedResult]) -> None:
    admission.close()
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log it: the stream reports it


def _sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


async def _events(
    served: ServedConversation,
    task: asyncio.Future[ServedResult],
    keepalive_s: float,
    released: asyncio.Queue[Released] | None = None,
) -> AsyncIterator[str]:
    """The stream's server-sent events: an opening chunk, approved prefixes as they are released (chunked
    review), comments while the reviewer decides, then the answer (or what is left of it)."""
    make_chunk = functools.partial(chunk, f"chatcmpl-{served.id}", served.request.model, int(time.time()))
    released = released if released is not None else asyncio.Queue()
    shown = ""  # the approved prefix already sent
    try:
        yield _sse(make_chunk({"role": "assistant", "content": ""}))
        while True:
            while not released.empty():
                piece = released.get_nowait().content
                shown += piece
                yield _sse(make_chunk({"content": piece}))
            if task.done():
                break
            arrived = asyncio.ensure_future(released.get())
            done, _ = await asyncio.wait([task, arrived], timeout=keepalive_s, return_when=asyncio.FIRST_COMPLETED)
            if arrived.done():  # sent now: put back, it could fall behind a piece released after it
                piece = arrived.result().content
                shown += piece
                yield _sse(make_chunk({"content": piece}))
            else:
                arrived.cancel()
            if not done:
                yield ": reviewing\n\n"  # an SSE comment: clients skip it, proxies see a live connection
        try:
            result = task.result()
        except Exception as exc:  # the headers are sent: the error goes in the stream
            yield _failure_event(served, exc)
            return
        # The answer is decided and at hand: its events go out in one write (the same events, byte for byte,
        # that one write per event would send; a client reads them one by one all the same).
        yield "".join(_answer_events(make_chunk, served, result, shown))
    finally:
        if not task.done():  # the client went away, or the server is stopping: end the turn, keep the record
            task.cancel()
            await asyncio.wait([task])


def _failure_event(served: ServedConversation, exc: Exception) -> str:
    if isinstance(exc, RequestError):
        return _sse(exc.body())
    logger.opt(exception=exc).error("stream of {} failed", served.file)  # the details in the log only
    return _sse(error_body(INTERNAL_ERROR, kind="server_error"))


_PIECE = "\x00piece\x00"  # stands for a piece's text in the encoded event every piece shares


def _answer_events(
    make_chunk: Callable[..., dict[str, Any]], served: ServedConversation, result: ServedResult, shown: str = ""
) -> Iterator[str]:
    extra = served.extra(result)
    if not shown:
        text = result.content
    elif result.outcome == "approved" and result.content.startswith(shown):
        text = result.content[len(shown) :]  # the rest of the approved answer
    else:
        # Sent text was withdrawn and the stream cannot take it back: the fallback follows it, the finish
        # reason says the answer was filtered, and `withdrawn` says how much of what came before is void.
        # (An approved answer that does not continue what was sent cannot happen: the engine releases only
        # the approved draft's own prefixes. Were it to, nothing more is sent.)
        text = "\n\n" + result.content if result.outcome != "approved" else ""
        extra["withdrawn"] = len(shown)
    # Every piece's event is the same JSON but for its text: encoded once, each piece's JSON string put in.
    head, tail = _sse(make_chunk({"content": _PIECE})).rsplit(json.dumps(_PIECE, ensure_ascii=False), 1)
    for piece in pieces(text) if text else []:
        yield head + json.dumps(piece, ensure_ascii=False) + tail
    finish = result.finish_reason if "withdrawn" not in extra else "content_filter"
    yield _sse(make_chunk({}, finish, extra=extra))
    if served.request.include_usage:
        yield _sse(make_chunk({}, usage=result.usage, choices=False))
    yield "data: [DONE]\n\n"
