"""The saved-state cache of an embedded llama.cpp context, sized by the bytes it really holds.

llama-cpp-python (0.3.36) saves `Llama.save_state()` into the cache after every completion. A saved
state carries the KV cache copy (`llama_state`, `llama_state_size` bytes) and `scores`, a copy of the
context's logits buffer: up to n_batch x vocabulary float32 rows, about 300 MB for the embedded model.
`LlamaRAMCache` counts only `llama_state_size` against its capacity, so a "512 MB" cache held 1.2-1.3 GiB.

With `logits_all=False` (every context this project builds) nothing needs more than the last row:
- `eval()` never writes `scores`, and sampling reads the logits from the llama.cpp context, not `scores`;
- after a cache hit `load_state()` sets `_requires_eval`, so `generate()` evaluates at least one token
  before it samples, and `load_state()` broadcasts the saved rows over `scores[:n_tokens]`, which one
  row does (a row of zero rows would not broadcast);
- the readers of `scores` outside logprobs (stopping criteria) read the last row, `_scores[-1]`.
Prompt logprobs (`echo` with `logits_all=True`) would need every row: this cache is not for such contexts.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from llama_cpp import LlamaRAMCache


def held_bytes(state: Any) -> int:
    """What one saved state holds in memory: the KV copy, the logits rows and the token ids."""
    return int(state.llama_state_size) + int(state.scores.nbytes) + int(state.input_ids.nbytes)


class LastRowStateCache(LlamaRAMCache):
    """`LlamaRAMCache` that keeps only the last logits row of each saved state and counts every byte held.

    `capacity_bytes` is then what the saved states really take (least recently used evicted first)."""

    def __init__(self, capacity_bytes: int) -> None:
        super().__init__(capacity_bytes=capacity_bytes)
        self._held = 0

    @property
    def cache_size(self) -> int:
        return self._held

    def __setitem__(self, key: Sequence[int], value: Any) -> None:
        key = tuple(key)
        if value.scores.shape[0] > 1:  # a shallow copy: the caller's state keeps its own rows
            value = copy.copy(value)
            value.scores = value.scores[-1:].copy()  # a copy, so the full buffer is freed
        old = self.cache_state.pop(key, None)
        if old is not None:
            self._held -= held_bytes(old)
        self.cache_state[key] = value
        self._held += held_bytes(value)
        while self._held > self.capacity_bytes and self.cache_state:
            _, evicted = self.cache_state.popitem(last=False)
            self._held -= held_bytes(evicted)

    def snapshot(self) -> OrderedDict[tuple[int, ...], Any]:
        """The saved states as they are now, for `restore` (the states themselves are shared, never changed)."""
        return self.cache_state.copy()

    def restore(self, states: OrderedDict[tuple[int, ...], Any]) -> None:
        """Hold exactly the states of a `snapshot` again (benchmarks/bench.py starts each arm from one); the byte
        count is recomputed from them."""
        self.cache_state = states.copy()
        self._held = sum(held_bytes(state) for state in self.cache_state.values())
