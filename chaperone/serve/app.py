"""The HTTP face of the guarded chat: OpenAI's chat-completions API on FastAPI.

Only an approved answer (or the policy's fallback) ever leaves this server. The routes are module-level
functions: the server's state comes from `app.state` through dependencies (access.py), the work of a
completion from completions.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from loguru import logger

from chaperone.audit.redaction import GLOBAL as GLOBAL_REDACTOR
from chaperone.serve.access import Admitted, ServerState, State, api_key
from chaperone.serve.completions import (
    INTERNAL_ERROR,
    read_chat_request,
    respond_streamed,
    respond_whole,
    turn_deadline,
)
from chaperone.serve.keys import ApiKeys
from chaperone.serve.limits import KeyLimits
from chaperone.serve.service import GuardedService
from chaperone.serve.wire import RequestError, error_body

router = APIRouter()
SCRIPTED_NOTE = "answers by fixed rules from config/models.yaml: no model, no real judgement"


def create_app(service: GuardedService, keys: ApiKeys) -> FastAPI:
    limits = service.config.limits
    app = FastAPI(
        title="Chaperone",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=_lifespan,
        exception_handlers={RequestError: _request_error, Exception: _unexpected},
    )
    app.state.chaperone = ServerState(
        service, keys, KeyLimits(limits.requests_per_minute, limits.max_concurrent_per_key)
    )
    app.include_router(router)
    return app


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    service = app.state.chaperone.service
    warming = asyncio.create_task(service.warm_up())  # the first request's verdict need not read the rubric
    yield
    warming.cancel()
    # Awaited, not only cancelled: a warm-up mid forward pass ends it before the models are closed.
    await asyncio.gather(warming, return_exceptions=True)
    await service.close_all("the server shut down before the request finished")


async def _request_error(request: Request, exc: RequestError) -> JSONResponse:
    logger.info("{} {} → {} {}", request.method, request.url.path, exc.status, exc.message)
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.opt(exception=exc).error(
        "{} {} failed: {}", request.method, request.url.path, GLOBAL_REDACTOR.text(f"{type(exc).__name__}: {exc}")
    )
    return JSONResponse(error_body(INTERNAL_ERROR, kind="server_error"), status_code=500)


@router.get("/healthz")  # no key: load balancers send none, so it says nothing about the traffic
async def healthz() -> dict[str, Any]:
    return {"status": "ok"}


def _model_entry(state: ServerState, name: str) -> dict[str, Any]:
    served, defaults = state.config.models[name], state.service.project.settings
    scripted = state.service.scripted_models(name)
    # Scripted stand-ins (config/models.yaml, kinds scripted and replay) are said to be so: no real judgement.
    label = {"scripted": {"models": scripted, "note": SCRIPTED_NOTE}} if scripted else {}
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
        **label,
    }


@router.get("/v1/models", dependencies=[Depends(api_key)])
async def list_models(state: State) -> dict[str, Any]:
    return {"object": "list", "data": [_model_entry(state, name) for name in state.config.models]}


@router.get("/v1/models/{name}", dependencies=[Depends(api_key)])
async def get_model(name: str, state: State) -> dict[str, Any]:
    if name not in state.config.models:
        raise RequestError(404, f"the model '{name}' does not exist", param="model", code="model_not_found")
    return _model_entry(state, name)


@router.post("/v1/chat/completions")
async def chat_completions(
    request: Request,
    state: State,
    deadline: Annotated[float, Depends(turn_deadline)],  # before `admitted`: the clock starts on arrival
    admitted: Admitted,
) -> Response:
    chat = await read_chat_request(request, state.config)
    served = state.service.start(chat, admitted.key)
    if chat.stream:
        return respond_streamed(state, served, deadline, admitted.take())
    return await respond_whole(state, served, deadline, admitted.take(), request.is_disconnected)
