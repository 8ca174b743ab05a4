"""Hidden states read inside a role's own llama.cpp context, where its conversation already is (issue 15).

The in-context head reads the assistant's conversation as it stands after its draft plus one question
(config/reviewer_head_in_context.yaml). When the assistant has just written that draft, its context already
holds almost all of those tokens: the system prompt, the request, the draft. Reading there evaluates only
what is missing (the end-of-turn and the question, ~25 tokens) instead of the request and the whole draft
again in the reviewer's own context.

How it stays correct: the prompt is tokenized exactly as the head's prompt would be, compared with the tokens
the context holds, and only the common prefix is kept. A causal model's state at a token depends only on the
tokens before it, so the vectors are those of a fresh pass over the same tokens, up to float rounding (as the
reviewer's own context with `reuse` gives; a slow test measures it). Afterwards the context is rolled back to
that prefix and its token count says so, so the role's next call reuses what is still valid and nothing else.
When the context holds too little of the prompt (another conversation's draft, a revision, the role busy
writing), nothing is touched and the caller reads in its own context.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from typing import Any

from chaperone.models.hidden_states import Extraction, LayerCapture, PromptTooLong, common_prefix, decode


def attach_capture(llm: Any) -> LayerCapture:
    """Give a loaded `llama_cpp.Llama` a context built with an eval callback (idle until armed) in place of its
    own: same settings, same weights; the old context and whatever it held are dropped."""
    import llama_cpp
    from llama_cpp import _internals

    capture = LayerCapture()
    params = type(llm.context_params).from_buffer_copy(llm.context_params)
    params.cb_eval = capture.callback
    params.cb_eval_user_data = None
    ctx = _internals.LlamaContext(model=llm._model, params=params, verbose=False)
    old = llm._ctx
    llm._stack.enter_context(contextlib.closing(ctx))
    llm._ctx, llm.context_params = ctx, params
    llm.n_tokens = 0
    old.close()  # idempotent: the Llama's exit stack closing it again later does nothing
    llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx.ctx), True)
    llm._chaperone_capture = capture  # llama.cpp holds only a raw pointer to the callback
    return capture


def read_held(
    llm: Any, capture: LayerCapture, tokens: Sequence[int], layers: Sequence[int], *, max_new: int
) -> Extraction | None:
    """Worker thread, the caller holding the context's lock. The last token's states at `layers` for `tokens`,
    evaluated on top of the prefix this context holds, then rolled back to it; None, with nothing touched,
    when more than `max_new` tokens would have to be read."""
    import llama_cpp

    tokens = [int(t) for t in tokens]
    n_ctx = llm.n_ctx()
    if len(tokens) > n_ctx:
        raise PromptTooLong(len(tokens), n_ctx)
    held = [int(t) for t in llm.input_ids[: llm.n_tokens]]
    keep = common_prefix(held, tokens, len(tokens) - 1)
    if len(tokens) - keep > max_new:
        return None
    memory = llama_cpp.llama_get_memory(llm._ctx.ctx)
    started = time.perf_counter()
    llm.n_tokens = keep  # from here on the context holds the prefix only, whatever happens below
    llama_cpp.llama_memory_seq_rm(memory, -1, keep, -1)
    capture.arm(layers)
    try:
        decode(llm._ctx, llm._batch, tokens, keep, llm.n_batch, capture)
    finally:
        capture.disarm()
        llama_cpp.llama_memory_seq_rm(memory, -1, keep, -1)
    states = capture.states(tuple(layers), llm.n_embd())
    return Extraction(
        layers=tuple(int(n) for n in layers),
        states=states,
        n_tokens=len(tokens),
        seconds=time.perf_counter() - started,
        evaluated=len(tokens) - keep,
    )
