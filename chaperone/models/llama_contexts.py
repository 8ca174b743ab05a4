"""The embedded model's llama.cpp contexts: one per role over one copy of the weights, and what each reads.

`context_on` builds a `llama_cpp.Llama` with its own context (KV cache) over weights another instance loaded
(models.yaml `contexts: per_role`); `count_reads` counts what a context evaluates and what its saved-state
cache costs, for the benchmarks.
"""

from __future__ import annotations

import contextlib
import ctypes
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass
class ContextStats:
    """What one llama.cpp context read and what its saved-state cache cost (figures, never decisions)."""

    calls: int = 0
    prompt_tokens: int = 0  # the prompts' full lengths
    prompt_evaluated: int = 0  # of those, the tokens llama.cpp actually read (the rest came from the KV cache)
    state_saves: int = 0
    state_save_s: float = 0.0
    state_loads: int = 0
    state_load_s: float = 0.0

    @property
    def cache_hits(self) -> int:
        return self.prompt_tokens - self.prompt_evaluated


def count_reads(llm: Any, stats: ContextStats) -> None:
    """Count what this Llama evaluates and what its saved states cost (per instance: wrappers, not a patch)."""
    eval_, save, load = llm.eval, llm.save_state, llm.load_state

    def counted_eval(tokens: Sequence[int]) -> None:
        if llm._chaperone_prompt_pending:  # the first evaluation of a call is what is left of its prompt
            llm._chaperone_prompt_pending = False
            stats.prompt_evaluated += len(tokens)
        eval_(tokens)

    def timed_save() -> Any:
        started = time.perf_counter()
        try:
            return save()
        finally:
            stats.state_saves += 1
            stats.state_save_s += time.perf_counter() - started

    def timed_load(state: Any) -> None:
        started = time.perf_counter()
        try:
            load(state)
        finally:
            stats.state_loads += 1
            stats.state_load_s += time.perf_counter() - started

    llm._chaperone_prompt_pending = False
    llm.eval, llm.save_state, llm.load_state = counted_eval, timed_save, timed_load


_WRAPPED = ("eval", "save_state", "load_state", "_chaperone_prompt_pending")


def context_on(base: Any) -> Any:
    """A `llama_cpp.Llama` with its own llama.cpp context (KV cache, batch, sampler, token history) over the
    weights `base` loaded: nothing is read from disk and the weights are not copied.

    llama-cpp-python's `Llama()` always loads a file, so the new instance takes `base`'s settings and
    replaces every per-context field `Llama.__init__` sets (as hidden_states.py builds its own context on
    `llm._model`). It holds `base`, so the weights outlive it; it closes only its own context."""
    import numpy as np
    from llama_cpp import Llama, _internals
    from llama_cpp.llama_tokenizer import LlamaTokenizer

    llm = Llama.__new__(type(base))
    llm.__dict__.update({k: v for k, v in base.__dict__.items() if k not in _WRAPPED})
    llm._weights_owner = base
    llm._stack = contextlib.ExitStack()
    llm.context_params = type(base.context_params).from_buffer_copy(base.context_params)
    llm._ctx = llm._stack.enter_context(
        contextlib.closing(_internals.LlamaContext(model=base._model, params=llm.context_params, verbose=False))
    )
    llm._batch = llm._stack.enter_context(
        contextlib.closing(
            _internals.LlamaBatch(n_tokens=base.n_batch, embd=0, n_seq_max=llm.context_params.n_ctx, verbose=False)
        )
    )
    llm._lora_adapter = None
    llm.tokenizer_ = LlamaTokenizer(llm)
    llm._chat_handlers = dict(base._chat_handlers)
    llm._candidates = _internals.LlamaTokenDataArray(n_vocab=base._n_vocab)
    llm._n_ctx = llm.n_ctx()
    llm.n_tokens = 0
    llm._requires_eval = True
    llm.input_ids = np.ndarray(base.input_ids.shape, dtype=np.intc)
    llm.scores = np.ndarray(base.scores.shape, dtype=np.single)  # untouched pages: no memory until written
    llm._mirostat_mu = ctypes.c_float(2.0 * 5.0)
    llm._sampler = None
    llm.cache = None
    return llm
