"""The HTTP face of the guarded chat: OpenAI's chat-completions API on FastAPI.

Only an approved answer (or the policy's fallback) ever leaves this module; a stream is written after the
verdict, with SSE comments keeping the connection open while the reviewer decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from loguru import logger

from chaperone.audit.redaction import GLOBAL as GLOBAL_REDACTOR
from chaperone.serve.keys import ApiKeys
from chaperone.serve.limits import KeyLimits
from chaperone.serve.service import GuardedService, ServedConversation, TurnResult
from chaperone.serve.wire import ChatRequest, RequestError, chunk, completion, error_body, parse_request, pieces

LOCAL_KEY = "local"  # the key name of every request when the server has no keys (loopback only)


def _headers(served: ServedConversation, result: TurnResult | None = None) -> dict[str, str]:
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


def create_app(service: GuardedService, keys: ApiKeys) -> FastAPI:
    config = service.config
    limits = KeyLimits(config.limits.requests_per_minute, config.limits.max_concurrent_per_key)

    async def shutdown() -> None:
        await service.close_all("the server shut down before the request finished")

    app = FastAPI(title="Chaperone", docs_url=None, redoc_url=None, openapi_url=None, on_shutdown=[shutdown])

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError) -> JSONResponse:
        logger.info("{} {} → {} {}", request.method, request.url.path, exc.status, exc.message)
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.opt(exception=exc).error(
            "{} {} failed: {}", request.method, request.url.path, GLOBAL_REDACTOR.text(f"{type(exc).__name__}: {exc}")
        )
        return JSONResponse(
            error_body("internal error; the server log has the details", kind="server_error"), status_code=500
        )

    def authenticate(request: Request) -> str:
        if not keys:
            return LOCAL_KEY
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        name = keys.identify(token.strip()) if scheme.lower() == "bearer" else None
        if name is None:
            why = "no bearer key" if not token.strip() else "an unknown key"
            client = request.client.host if request.client else "?"
            logger.warning("401 for {} from {}: {}", request.url.path, client, why)  # never the key itself
            raise RequestError(
                401,
                "missing or invalid API key: send 'Authorization: Bearer <key>'",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return name

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "in_flight": len(service.open)}

    def _model_entry(name: str) -> dict[str, Any]:
        served, defaults = config.models[name], service.project.settings
        return {
            "id": name,
            "object": "model",
            "created": 0,
            "owned_by": "chaperone",
            "description": served.description,
            "policy": served.policy or defaults.default_policy,
            "agents": {
                "assistant": served.assistant or defaults.agents.assistant,
                "reviewer": served.reviewer or defaults.agents.reviewer,
            },
        }

    @app.get("/v1/models")
    async def list_models(request: Request) -> dict[str, Any]:
        authenticate(request)
        return {"object": "list", "data": [_model_entry(name) for name in config.models]}

    @app.get("/v1/models/{name}")
    async def get_model(name: str, request: Request) -> dict[str, Any]:
        authenticate(request)
        if name not in config.models:
            raise RequestError(404, f"the model '{name}' does not exist", param="model", code="model_not_found")
        return _model_entry(name)

    async def read_body(request: Request) -> Any:
        cap = config.limits.max_body_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > cap:
            raise RequestError(
                413, f"request body too large: {declared} bytes (at most {cap})", code="request_too_large"
            )
        body = bytearray()
        async for part in request.stream():
            body += part
            if len(body) > cap:
                raise RequestError(413, f"request body too large (at most {cap} bytes)", code="request_too_large")
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise RequestError(400, f"the request body is not valid JSON ({exc})", code="invalid_json") from None

    async def answer(served: ServedConversation, deadline: float) -> TurnResult:
        """Run the turn within the time limit; always close the transcript. Errors become RequestErrors."""
        limit = config.limits.request_timeout_s
        outcome = None
        try:
            async with asyncio.timeout_at(deadline):
                async with service.gate:
                    result = await served.run()
        except TimeoutError:
            served.record_failure(f"request time limit of {limit:g} s exceeded; nothing was delivered")
            outcome = "interrupted"
            raise RequestError(
                504,
                f"the guarded answer took longer than this server's limit of {limit:g} s; "
                f"nothing was delivered (transcript {served.id})",
                kind="server_error",
                code="request_timeout",
            ) from None
        except asyncio.CancelledError:
            served.record_failure("the request was cancelled (client gone or server shutting down)")
            outcome = "interrupted"
            raise
        finally:
            await asyncio.shield(service.finish(served, outcome))
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

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        deadline = asyncio.get_running_loop().time() + config.limits.request_timeout_s
        key = authenticate(request)
        admission = contextlib.ExitStack()
        admission.enter_context(limits.admit(key))
        try:
            body = await read_body(request)
            chat = parse_request(
                body,
                ignored_fields=set(config.ignored_fields),
                max_messages=config.limits.max_messages,
                max_message_tokens=config.limits.max_message_tokens,
                system_policy=config.client_system_messages,
            )
            served = service.start(chat, key)
        except BaseException:
            admission.close()
            raise
        if chat.stream:
            # The turn runs as its own task, which also releases the admission: a client that goes away
            # before the stream starts still gets its turn finished, recorded and counted out.
            task = asyncio.ensure_future(answer(served, deadline))
            task.add_done_callback(lambda t: (admission.close(), t.cancelled() or t.exception()))
            return StreamingResponse(
                _stream(served, chat, task),
                media_type="text/event-stream",
                headers={**_headers(served), "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        with admission:
            try:
                result = await answer(served, deadline)
            except RequestError as err:
                err.headers.update(_headers(served))
                raise
        body = completion(
            f"chatcmpl-{served.id}",
            chat.model,
            result.content,
            result.finish_reason,
            result.usage,
            served.extra(result),
        )
        return JSONResponse(body, headers=_headers(served, result))

    async def _stream(
        served: ServedConversation, chat: ChatRequest, task: asyncio.Future[TurnResult]
    ) -> AsyncIterator[str]:
        def event(data: dict[str, Any]) -> str:
            return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"

        completion_id, created = f"chatcmpl-{served.id}", int(time.time())
        try:
            yield event(chunk(completion_id, chat.model, created, {"role": "assistant", "content": ""}))
            while True:
                done, _ = await asyncio.wait([task], timeout=config.stream_keepalive_s)
                if done:
                    break
                yield ": reviewing\n\n"  # an SSE comment: clients skip it, proxies see a live connection
            try:
                result = task.result()
            except RequestError as err:
                yield event(err.body())
                return
            except Exception as exc:  # the headers are sent: the error goes in the stream, the details in the log
                logger.opt(exception=exc).error("stream of {} failed", served.file)
                yield event(error_body("internal error; the server log has the details", kind="server_error"))
                return
            for piece in pieces(result.content):
                yield event(chunk(completion_id, chat.model, created, {"content": piece}))
            yield event(chunk(completion_id, chat.model, created, {}, result.finish_reason, extra=served.extra(result)))
            if chat.include_usage:
                yield event(chunk(completion_id, chat.model, created, {}, usage=result.usage, choices=False))
            yield "data: [DONE]\n\n"
        finally:
            if not task.done():  # the client went away, or the server is stopping: end the turn, keep the record
                task.cancel()
                await asyncio.wait([task])

    return app
