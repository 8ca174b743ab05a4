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
When the context holds too little of the prompt (another conversation's draft, a revision), nothing is touched
and the caller reads in its own context.

While the role writes (chunked review), `read_between_tokens` reads the same way between two generated tokens,
in the writing thread (models/between_tokens.py), and then puts the context back exactly as the generation left
it: llama-cpp-python's generator has evaluated every token but the last one it yielded (it evaluates that one
when it resumes), and its `n_tokens`/`input_ids` must describe the KV cache. The read keeps the common prefix
of the held tokens and the head's prompt; where the draft's re-tokenization ends differently from what was
generated (the few tokens past the chunk's cut), the held tokens after the prefix are dropped for the read and
evaluated again afterwards one at a time, as generation evaluated them, so the context holds the same numbers
and the draft continues token for token as it would have (a slow test compares a greedy draft with and
without reads). The prompt's own tokens (read in batches) are never dropped: a read that would is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import Any

from loguru import logger

from chaperone.models.between_tokens import BetweenTokens, GenerationStateLost
from chaperone.models.hidden_states import (
    Extraction,
    HiddenStateError,
    LayerCapture,
    PromptTooLong,
    chat_tokens,
    common_prefix,
    decode,
)


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


def read_between_tokens(
    llm: Any, capture: LayerCapture, tokens: Sequence[int], layers: Sequence[int], *, max_new: int, floor: int
) -> Extraction | None:
    """The generating thread, between two tokens: `read_held`, then the context restored to what it held.

    `floor`: the position from which the generation evaluated its tokens one at a time (its prompt's end or
    later). None, with nothing touched, when the read would drop a token before it, or read more than `max_new`
    tokens, or drop more than `max_new` of the draft's. GenerationStateLost if the context cannot be restored."""
    tokens = [int(t) for t in tokens]
    held = [int(t) for t in llm.input_ids[: llm.n_tokens]]
    keep = common_prefix(held, tokens, len(tokens) - 1)
    if keep < floor or len(tokens) - keep > max_new or len(held) - keep > max_new:
        return None
    try:
        read = read_held(llm, capture, tokens, layers, max_new=max_new)
    finally:
        restore(llm, held)
    return None if read is None else dataclasses.replace(read, restored=len(held) - keep)


def restore(llm: Any, held: Sequence[int]) -> None:
    """Make the context hold `held` again when it holds a prefix of it (`llm.n_tokens`, as `read_held` leaves
    it): the rest evaluated one token a batch, as `Llama.generate` evaluated them, at the same positions."""
    import llama_cpp

    keep = llm.n_tokens
    if keep == len(held):
        return
    try:
        llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(llm._ctx.ctx), -1, keep, -1)
        decode(llm._ctx, llm._batch, held, keep, 1, None)
    except Exception as exc:
        raise GenerationStateLost(f"the draft's context could not be restored after a chunk read: {exc}") from exc
    llm.n_tokens = len(held)  # input_ids[:len(held)] were never changed: only the KV cache was


async def read_while_writing(
    writing: BetweenTokens,
    llm: Any,
    capture: LayerCapture,
    messages: Sequence[Mapping[str, str]],
    layers: Sequence[int],
    *,
    max_new: int,
) -> Extraction | None:
    """A chunk verdict's read while the role writes in this context: handed to the writing thread, done between
    two tokens, the context restored after it (`read_between_tokens`). None when the draft ended first or the
    read does not fit (the caller reads in its own context); a read that failed left the context intact and is
    None too. Only GenerationStateLost (the draft stops as well) is raised."""

    def job(floor: int) -> Extraction | None:  # the writing thread: tokenized there too, the context's thread
        tokens = chat_tokens(llm, messages)
        return read_between_tokens(llm, capture, tokens, layers, max_new=max_new, floor=floor)

    try:
        return await asyncio.wrap_future(writing.submit(job))
    except HiddenStateError as exc:
        logger.debug("a read between two tokens failed ({}); the reviewer reads in its own context", exc)
        return None
