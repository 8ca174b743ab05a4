"""Who may call the server and how much: FastAPI dependencies that find the server's state on the app,
check a request's bearer key (401) and count it against the key's limits (429)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from loguru import logger

from chaperone.serve.config import ServeConfig
from chaperone.serve.keys import ApiKeys
from chaperone.serve.limits import KeyLimits
from chaperone.serve.service import GuardedService
from chaperone.serve.wire import RequestError

LOCAL_KEY = "local"  # the key name of every request when the server has no keys (loopback only)


@dataclass(frozen=True)
class ServerState:
    """What every route reads, kept on `app.state.chaperone` by create_app."""

    service: GuardedService
    keys: ApiKeys
    limits: KeyLimits

    @property
    def config(self) -> ServeConfig:
        return self.service.config


# The dependencies are `async def` because FastAPI runs a plain `def` in a worker thread, and KeyLimits
# is not thread-safe.


async def server_state(request: Request) -> ServerState:
    return request.app.state.chaperone


State = Annotated[ServerState, Depends(server_state)]


async def api_key(request: Request, state: State) -> str:
    """The name of the request's bearer key; a 401 without a known one."""
    if not state.keys:
        return LOCAL_KEY
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    name = state.keys.identify(token.strip()) if scheme.lower() == "bearer" else None
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


class Admission:
    """A request counted against its key's limits. The dependency releases it when the route ends, unless
    the route took it over with take() to release it when the turn ends."""

    def __init__(self, key: str, held: contextlib.ExitStack):
        self.key, self._held = key, held

    def take(self) -> contextlib.ExitStack:
        """The admission, for the caller to close; the dependency's exit no longer releases it."""
        return self._held.pop_all()


async def admission(state: State, key: Annotated[str, Depends(api_key)]) -> AsyncIterator[Admission]:
    with contextlib.ExitStack() as held:
        held.enter_context(state.limits.admit(key))
        yield Admission(key, held)


# scope="function": released when the route function ends, not after its response is sent; what must
# stay counted past the route (a stream's turn) is take()n.
Admitted = Annotated[Admission, Depends(admission, scope="function")]
