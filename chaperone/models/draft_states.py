"""The hidden states a draft's own tokens produce while the assistant writes them (issue 15).

Generation evaluates each new token once, one token a batch, in the assistant's llama.cpp context; with the
context's eval callback attached (models/in_context.attach_capture) those passes can hand over the residual
stream of the chosen layers for free. A chunk head (engine/chunk_head.py) judges a chunk from the state of
the token that ends it: no question is read, the draft is never paused.

`DraftStates` is one draft's record. The generating thread's callback records (position, token, layer, row) for
every single-token pass after the prompt; the event loop asks for the state of the token that covers a byte
offset of the draft's text (the streamed pieces are the tokens' bytes, decoded) and waits until that token has
been evaluated, which generation does one token after streaming it. A read of the head's own (between two
tokens, models/in_context.py) arms the capture for itself and is never recorded here.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

# The key of `extra_create_args` that asks the embedded client to record a draft's states into a DraftStates.
ARG = "chaperone_draft_states"


class DraftStates:
    """One draft's per-token hidden states, recorded by the generating thread, read from the event loop."""

    def __init__(self, layers: Sequence[int]):
        self.layers = tuple(int(n) for n in layers)
        self.start: int | None = None  # the position of the draft's first token (the prompt's length)
        self._llm: Any = None
        self._token_bytes: Callable[[int], int] | None = None
        self._rows: dict[int, tuple[int, dict[int, np.ndarray]]] = {}  # position -> (token, {layer: row})
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Event | None = None
        self.ended = False

    # -- the client, when the generation starts and ends ---------------------------------------------------
    def begin(self, llm: Any, start: int, loop: asyncio.AbstractEventLoop) -> None:
        self._llm, self.start, self._loop = llm, start, loop
        self._changed = asyncio.Event()
        self._token_bytes = lambda token: len(llm.detokenize([token]))

    def end(self) -> None:
        """The generating thread, when the draft is over: waiting readers get what there is."""
        self.ended = True
        self._wake()

    # -- the generating thread, inside llama_decode ----------------------------------------------------------
    def record(self, layer: int, row: np.ndarray) -> None:
        """One layer's output row of a single-token pass: kept under that token's position (the first record of
        a position wins: a restore after a read between tokens evaluates the same tokens again)."""
        batch = self._llm._batch.batch
        n = int(batch.n_tokens)
        pos, token = int(batch.pos[n - 1]), int(batch.token[n - 1])
        if self.start is None or pos < self.start:
            return
        with self._lock:
            token_was, states = self._rows.setdefault(pos, (token, {}))
            if token_was == token:
                states.setdefault(layer, row)
        if len(states) == len(self.layers):
            self._wake()

    def _wake(self) -> None:
        loop, changed = self._loop, self._changed
        if loop is not None and changed is not None and not loop.is_closed():
            loop.call_soon_threadsafe(changed.set)

    # -- the event loop ----------------------------------------------------------------------------------------
    def covering(self, offset_bytes: int) -> tuple[int, dict[int, np.ndarray]] | None:
        """(position, {layer: row}) of the draft token whose bytes reach `offset_bytes` of the draft (1 or more),
        if it has been evaluated; None if not (yet)."""
        if self.start is None or self._token_bytes is None or offset_bytes < 1:
            return None
        with self._lock:
            rows = dict(self._rows)
        total, pos = 0, self.start
        while pos in rows:
            token, states = rows[pos]
            total += self._token_bytes(token)
            if total >= offset_bytes:
                return (pos, states) if len(states) == len(self.layers) else None
            pos += 1
        return None

    async def state_at(self, offset_bytes: int) -> tuple[int, dict[int, np.ndarray]] | None:
        """`covering`, waiting until that token has been evaluated; None if the draft ended without it."""
        while True:
            assert self._changed is not None, "begin() was not called"
            self._changed.clear()
            found = self.covering(offset_bytes)
            if found is not None or self.ended:
                return found
            await self._changed.wait()
