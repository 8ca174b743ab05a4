"""The app in-process, over ASGI, with a stand-in service whose turns end when the test says: which check
answers first (time limit, key, admission) and when a request is counted out of its key's limits."""

from __future__ import annotations

import asyncio
import json

from chaperone.serve.app import create_app
from chaperone.serve.config import ServeConfig
from chaperone.serve.keys import ApiKeys, digest
from chaperone.serve.service import ServedResult
from chaperone.serve.wire import RequestError

KEY = "an-app-test-key-0123456789"
AUTH = {"authorization": f"Bearer {KEY}"}
ASK = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


class StandInTurn:
    """A ServedConversation's surface, with a turn that waits for `finish`."""

    def __init__(self, request, key_name: str):
        self.request, self.key_name = request, key_name
        self.id, self.file, self.policy = "0123456789abcdef", "stand-in.jsonl", "public"
        self.finish = asyncio.Event()
        self.failures: list[str] = []
        self.result = ServedResult("approved", "Hello there.", usage={"prompt_tokens": 1, "completion_tokens": 2})

    async def run(self) -> ServedResult:
        await self.finish.wait()
        return self.result

    def record_failure(self, message: str) -> None:
        self.failures.append(message)

    def stream_to(self, sink) -> None:  # no chunked review here: nothing is released before the answer
        pass

    def extra(self, result: ServedResult) -> dict:
        return {"outcome": result.outcome}


class StandInService:
    def __init__(self, config: ServeConfig):
        self.config = config
        self.gate = asyncio.Semaphore(config.limits.max_concurrent_requests)
        self.stopping = asyncio.Event()
        self.open: set[StandInTurn] = set()
        self.turns: list[StandInTurn] = []
        self.closed: list[str | None] = []

    def start(self, request, key_name: str) -> StandInTurn:
        if request.model not in self.config.models:
            raise RequestError(404, "no such model", param="model", code="model_not_found")
        turn = StandInTurn(request, key_name)
        self.open.add(turn)
        self.turns.append(turn)
        return turn

    async def finish(self, served: StandInTurn, outcome: str | None = None) -> None:
        self.closed.append(outcome)
        self.open.discard(served)

    async def warm_up(self) -> list[str]:
        return []


def make_app(**limits):
    config = ServeConfig.model_validate({"models": {"m": {}}, "limits": limits, "stream_keepalive_s": 0.05})
    service = StandInService(config)
    app = create_app(service, ApiKeys((("tester", digest(KEY)),)))  # type: ignore[arg-type]
    return app, service, app.state.chaperone.limits


class Call:
    """One HTTP request to the ASGI app; the test reads what it sends and may hang up."""

    def __init__(self, app, body: bytes | dict, headers: dict[str, str], path: str = "/v1/chat/completions"):
        body = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.outbox: asyncio.Queue = asyncio.Queue()
        self.inbox.put_nowait({"type": "http.request", "body": body, "more_body": False})
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [(k.encode(), v.encode()) for k, v in {"content-type": "application/json", **headers}.items()],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
        }
        self.task = asyncio.ensure_future(app(scope, self.inbox.get, self.outbox.put))

    async def start(self) -> tuple[int, dict[str, str]]:
        message = await asyncio.wait_for(self.outbox.get(), 5)
        assert message["type"] == "http.response.start"
        return message["status"], {k.decode(): v.decode() for k, v in message["headers"]}

    async def body_part(self) -> str:
        message = await asyncio.wait_for(self.outbox.get(), 5)
        return message["body"].decode()

    async def whole(self) -> tuple[int, dict[str, str], str]:
        status, headers = await self.start()
        parts = []
        while True:
            message = await asyncio.wait_for(self.outbox.get(), 5)
            parts.append(message["body"].decode())
            if not message.get("more_body"):
                break
        await asyncio.wait_for(self.task, 5)
        return status, headers, "".join(parts)

    async def hang_up(self) -> None:
        self.inbox.put_nowait({"type": "http.disconnect"})
        await asyncio.wait_for(self.task, 5)


async def test_a_bad_key_is_401_before_the_rate_limit_and_counts_against_nothing():
    app, _, limits = make_app(requests_per_minute=1)
    status, _, body = await Call(app, b"{not json", AUTH).whole()
    assert status == 400 and json.loads(body)["error"]["code"] == "invalid_json"
    assert limits.in_flight("tester") == 0  # counted out before its error was sent
    status, headers, _ = await Call(app, ASK, {"authorization": "Bearer wrong-key-0123456789"}).whole()
    assert status == 401 and headers["www-authenticate"] == "Bearer"
    status, headers, body = await Call(app, ASK, AUTH).whole()  # the 400 used the minute's one request
    assert status == 429 and json.loads(body)["error"]["code"] == "rate_limit_exceeded"
    assert "retry-after" in headers


async def test_a_request_refused_after_admission_frees_its_slot():
    app, service, limits = make_app(max_concurrent_per_key=1)
    status, _, _ = await Call(app, {**ASK, "model": "nope"}, AUTH).whole()
    assert status == 404 and limits.in_flight("tester") == 0 and not service.turns


async def test_a_whole_answer_holds_its_slot_until_the_turn_ends():
    app, service, limits = make_app(max_concurrent_per_key=1)
    call = Call(app, ASK, AUTH)
    while not service.turns:
        await asyncio.sleep(0.01)
    assert limits.in_flight("tester") == 1
    status, _, body = await Call(app, ASK, AUTH).whole()
    assert status == 429 and json.loads(body)["error"]["code"] == "concurrency_limit_exceeded"
    service.turns[0].finish.set()
    status, headers, body = await call.whole()
    assert status == 200 and json.loads(body)["choices"][0]["message"]["content"] == "Hello there."
    assert headers["x-chaperone-outcome"] == "approved" and headers["x-chaperone-transcript-id"] == "0123456789abcdef"
    assert limits.in_flight("tester") == 0 and service.closed == [None]


async def test_a_stream_keeps_its_slot_past_the_route_and_a_hang_up_ends_the_turn():
    app, service, limits = make_app(max_concurrent_per_key=1)
    call = Call(app, {**ASK, "stream": True}, AUTH)
    status, headers = await call.start()
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    assert (await call.body_part()).startswith("data: ")  # the opening chunk, before any verdict
    assert await call.body_part() == ": reviewing\n\n"
    assert limits.in_flight("tester") == 1  # the route has returned; the turn still counts
    await call.hang_up()
    await asyncio.sleep(0.05)
    [turn] = service.turns
    assert any("cancelled" in f for f in turn.failures) and service.closed == ["interrupted"]
    assert limits.in_flight("tester") == 0


async def test_a_streamed_answer_ends_with_done():
    app, service, limits = make_app()
    call = Call(app, {**ASK, "stream": True, "stream_options": {"include_usage": True}}, AUTH)
    while not service.turns:
        await asyncio.sleep(0.01)
    service.turns[0].finish.set()
    status, _, raw = await call.whole()
    events = [json.loads(line[6:]) for line in raw.splitlines() if line.startswith("data: {")]
    assert status == 200 and raw.endswith("data: [DONE]\n\n")
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"]) == "Hello there."
    assert events[-1]["usage"]["completion_tokens"] == 2 and events[-2]["chaperone"] == {"outcome": "approved"}
    assert limits.in_flight("tester") == 0


async def test_an_answer_cut_at_the_token_limit_finishes_with_length_whole_and_streamed():
    """OpenAI's finish_reason "length": the approved answer stopped at max_tokens, mid-sentence."""
    app, service, _ = make_app()
    for stream in (False, True):
        call = Call(app, {**ASK, "stream": stream}, AUTH)
        while len(service.turns) < 1 + stream:
            await asyncio.sleep(0.01)
        turn = service.turns[-1]
        turn.result = ServedResult("approved", "Run kill and then", cut=True)
        turn.finish.set()
        status, _, raw = await call.whole()
        assert status == 200
        if not stream:
            choice = json.loads(raw)["choices"][0]
            assert choice["finish_reason"] == "length" and choice["message"]["content"] == "Run kill and then"
        else:
            events = [json.loads(line[6:]) for line in raw.splitlines() if line.startswith("data: {")]
            finals = [e["choices"][0]["finish_reason"] for e in events if e["choices"][0]["finish_reason"]]
            assert finals == ["length"] and raw.endswith("data: [DONE]\n\n")
    # Only an approved answer is "cut": a withheld turn is the fallback, filtered whatever its drafts did.
    assert ServedResult("withheld", "I can't help with that.", cut=True).finish_reason == "content_filter"
    assert ServedResult("approved", "Done.").finish_reason == "stop"


async def test_a_whole_answer_whose_client_hangs_up_ends_its_turn_and_frees_its_slot():
    app, service, limits = make_app(max_concurrent_per_key=1)
    call = Call(app, ASK, AUTH)
    while not service.turns:
        await asyncio.sleep(0.01)
    assert limits.in_flight("tester") == 1
    await call.hang_up()  # well before the 300 s time limit: it sees the disconnect within a poll
    [turn] = service.turns
    assert turn.failures == ["the client went away before the answer was ready; nothing was delivered"]
    assert service.closed == ["interrupted"] and limits.in_flight("tester") == 0 and not service.open


async def test_a_stopping_server_answers_the_requests_in_flight_with_503_and_their_streams_with_an_error():
    app, service, limits = make_app()
    whole, stream = Call(app, ASK, AUTH), Call(app, {**ASK, "stream": True}, AUTH)
    status, _ = await stream.start()
    assert status == 200
    while len(service.turns) < 2:
        await asyncio.sleep(0.01)
    service.stopping.set()
    status, headers, body = await whole.whole()
    error = json.loads(body)["error"]
    assert status == 503 and error["code"] == "server_shutting_down" and "nothing was delivered" in error["message"]
    assert headers["x-chaperone-transcript-id"] == "0123456789abcdef"
    parts = []
    while not parts or not parts[-1].startswith('data: {"error"'):
        parts.append(await stream.body_part())
    assert json.loads(parts[-1][6:])["error"]["code"] == "server_shutting_down"
    message = await asyncio.wait_for(stream.outbox.get(), 5)
    assert message["type"] == "http.response.body" and not message.get("more_body")  # and the stream ends
    await asyncio.wait_for(stream.task, 5)
    assert service.closed == ["interrupted", "interrupted"] and limits.in_flight("tester") == 0
    shut = ["the server shut down before the request finished; nothing was delivered"]
    assert all(t.failures == shut for t in service.turns)


async def test_a_streamed_answer_is_sent_in_one_write_holding_exactly_the_events_of_each_piece():
    # The approved answer goes out in one body part after the verdict: the same bytes, event for event, as one
    # write per piece; text that JSON must escape (quotes, backslashes, newlines, non-ASCII) included.
    import functools

    from chaperone.serve.completions import _sse
    from chaperone.serve.wire import chunk, pieces

    text = 'Run `kill "$PID"` \\ then wait.\nÜber 50 % of\tthe time \x00 it stops. ' * 4
    app, service, _ = make_app()
    call = Call(app, {**ASK, "stream": True}, AUTH)
    await call.start()
    opening = await call.body_part()
    service.turns[0].result = ServedResult("approved", text)
    service.turns[0].finish.set()
    answer = await call.body_part()
    while answer == ": reviewing\n\n":
        answer = await call.body_part()
    make = functools.partial(chunk, "chatcmpl-0123456789abcdef", "m", json.loads(opening[6:])["created"])
    expected = "".join(_sse(make({"content": p})) for p in pieces(text))
    expected += _sse(make({}, "stop", extra={"outcome": "approved"})) + "data: [DONE]\n\n"
    assert len(pieces(text)) > 5 and answer == expected
    assert await call.body_part() == ""  # the end of the stream
