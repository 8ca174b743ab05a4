"""Chunked review (a policy's `streaming: chunks`): the reviewer judges the draft while it is written.

At each chunk boundary (engine/chunking.py) the draft so far, a prefix, goes to the reviewer exactly as a
whole draft would (request and prefix as fenced, untrusted data), told only that it is unfinished. An
approved prefix is released at once (a `Released` event: the chat prints it, a stream sends it); a prefix
sent back, or a verdict that cannot be read, stops the generation there and becomes the round's verdict,
so the turn goes to revision as with a whole draft. What is released is exactly what was approved, prefix
by prefix; the finished draft still gets the usual whole-draft verdict before the turn is approved.

Generation runs at most one chunk ahead of the verdicts: when a chunk closes while the previous one is still
being judged, drafting waits for that verdict. A chunk that fails therefore stops the draft within one more
chunk, and at once when its verdict arrives mid-chunk (the writing task is cancelled between pieces).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from autogen_core import CancellationToken
from autogen_core.models import CreateResult, LLMMessage, RequestUsage
from pydantic import BaseModel

from chaperone.config.schema import ChunkSpec
from chaperone.engine.chunk_head import ChunkScore, system_prompt_of, warn_once
from chaperone.engine.chunking import ChunkCutter
from chaperone.engine.events import ChunkVerdict, Released, Usage, recorded_scores
from chaperone.engine.verdict import text_sha
from chaperone.models import draft_states
from chaperone.models.draft_states import DraftStates
from chaperone.models.pool import ModelHandle, PieceHook, combined_token, text_of

if TYPE_CHECKING:
    from chaperone.engine.reviewer import ReviewingAgent, ReviewResult

Emit = Callable[[BaseModel], Awaitable[None]]


@dataclass
class Written:
    """A draft written under chunked review: the model's result, and what the review did to it."""

    result: CreateResult
    released: int = 0  # the draft's first `released` characters were approved and shown
    stopped_at_chunk: int | None = None  # the chunk whose prefix was sent back; the generation stopped there
    tokens_saved: int | None = None  # what was left of max_tokens when it stopped


@dataclass
class _Writing:
    """One draft being written: its text, its one review in flight, and why it stopped (if it did)."""

    round: int
    # One fence nonce for every verdict on this draft (its chunks and the whole-draft verdict): each review
    # message then starts with the one before it, so the reviewer's context reads only the new text and the
    # question (a fresh nonce per verdict made it re-read the request and the whole prefix every chunk).
    # Still secret from the draft: the assistant never sees a review message, and the nonce is removed
    # from any text before it is quoted.
    nonce: str = field(default_factory=lambda: secrets.token_hex(6))
    raw: str = ""
    text: str = ""  # raw without leading white space: what the draft will be, offsets into it
    pieces: int = 0
    chunks: int = 0
    released: int = 0
    result: CreateResult | None = None
    pending: asyncio.Future[None] | None = None
    recording: bool = False  # the review in flight has its verdict and is putting it on the record
    stop: tuple[int, ReviewResult] | None = None
    error: BaseException | None = None
    states: DraftStates | None = None  # the draft tokens' states, when the reviewer's chunk head judges chunks
    writer: asyncio.Future[None] | None = field(default=None, repr=False)


def unavailable(assistant: ModelHandle, reviewer: ModelHandle) -> str | None:
    """Why chunked review cannot run with these two models (None: it can).

    One llama.cpp context serves one call at a time and a draft's stream holds it to the end: a chunk's
    review would wait for the very draft it should interrupt. Each role on its own model, or on its own
    context of one embedded model (`contexts: per_role`, the default), works."""
    if assistant.client is reviewer.client and assistant.serial:
        return (
            f"the assistant and the reviewer share model '{assistant.name}', which runs one call at a time"
            " (one llama.cpp context: contexts: shared in config/models.yaml)"
        )
    return None


class ChunkedReview:
    """A conversation's chunked review: shared by its assistant (which writes through it) and its reviewer
    (which takes a stopped draft's verdict from it)."""

    def __init__(self, reviewer: ReviewingAgent, spec: ChunkSpec, emit: Emit):
        self.reviewer, self.spec, self.emit = reviewer, spec, emit
        self.turn = 0
        self.review_failed = False  # a chunk's review call failed in this turn (the turn fails as a review)
        self._stopped: dict[str, tuple[int, ReviewResult]] = {}
        self._nonces: dict[str, str] = {}

    def begin_turn(self, turn: int) -> None:
        self.turn, self.review_failed = turn, False
        self._stopped.clear()
        self._nonces.clear()

    def nonce_of(self, draft: str) -> str | None:
        """The fence nonce this draft's chunks were judged under (None: not a draft written here)."""
        return self._nonces.get(text_sha(draft))

    def stopped_by(self, draft: str) -> tuple[int, ReviewResult] | None:
        """The chunk that stopped exactly this draft, with its verdict (taken: it answers one round)."""
        return self._stopped.pop(text_sha(draft), None)

    async def write(
        self,
        model: ModelHandle,
        messages: list[LLMMessage],
        args: dict,
        tokens: list[CancellationToken | None],
        *,
        request: str,
        round_: int,
        on_piece: PieceHook | None = None,
    ) -> Written:
        """Write one draft, judging it chunk by chunk; stop at the first chunk that is not approved."""
        w = _Writing(round_)
        head = self.reviewer.chunk_head
        if head is not None:
            if head.reads(model, system_prompt_of(messages)):
                w.states = DraftStates(head.layers)
                args = {**args, draft_states.ARG: w.states}
            else:
                warn_once(
                    f"reviewer {self.reviewer.name}: chunk head {head.path} not used for drafts of model"
                    f" {model.label} (another context or another system prompt than its card's); chunk verdicts"
                    " read as before"
                )
        token = combined_token(tokens)
        w.writer = writer = asyncio.ensure_future(self._generate(model, messages, args, token, w, request, on_piece))
        token.link_future(writer)  # a client that ignores cancellation tokens still stops with the turn
        try:
            try:
                await writer
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if (w.stop is None and w.error is None) or (current is not None and current.cancelling()):
                    raise  # the turn was cancelled, not the draft stopped by a verdict
            # The finished draft gets the whole-draft verdict next, which reads this chunk too: a review still
            # waiting or deciding is cancelled (the reviewer's time goes to that verdict); one that has its
            # verdict finishes recording it.
            if w.pending is not None and not w.pending.done():
                if not w.recording:
                    w.pending.cancel()
                await asyncio.wait({w.pending})
        finally:
            if w.pending is not None and not w.pending.done():
                w.pending.cancel()
                await asyncio.wait({w.pending})
        if w.error is not None:
            self.review_failed = True  # fail closed: the turn fails as a failed review, nothing more is shown
            raise w.error
        if w.stop is not None:
            return self._stopped_draft(model, messages, args, w)
        assert w.result is not None
        self._nonces[text_sha(text_of(w.result.content).strip())] = w.nonce
        return Written(w.result, released=w.released)

    def _stopped_draft(self, model: ModelHandle, messages: list[LLMMessage], args: dict, w: _Writing) -> Written:
        assert w.stop is not None
        text = w.text.rstrip()
        self._stopped[text_sha(text)] = w.stop
        usage = RequestUsage(prompt_tokens=_prompt_tokens(model, messages), completion_tokens=w.pieces)
        budget = args.get("max_tokens")
        saved = max(budget - w.pieces, 0) if isinstance(budget, int) else None
        result = CreateResult(finish_reason="content_filter", content=text, usage=usage, cached=False)
        return Written(result, released=w.released, stopped_at_chunk=w.stop[0], tokens_saved=saved)

    async def _generate(
        self,
        model: ModelHandle,
        messages: list[LLMMessage],
        args: dict,
        token: CancellationToken,
        w: _Writing,
        request: str,
        on_piece: PieceHook | None,
    ) -> None:
        cutter = ChunkCutter(self.spec)
        async with model.slot():
            stream = model.client.create_stream(
                messages, extra_create_args={**args, **model.stream_args()}, cancellation_token=token
            )
            try:
                async for item in stream:
                    if isinstance(item, CreateResult):
                        w.result = item
                        continue
                    if not item:
                        continue
                    w.raw += item
                    w.pieces += 1
                    if on_piece is not None:
                        on_piece(item)
                    w.text = w.raw.lstrip()
                    cut = cutter.feed(w.text) if w.text else None
                    if cut is None:
                        continue
                    if w.pending is not None and not w.pending.done():
                        await asyncio.wait({w.pending})  # at most one chunk written ahead of the verdicts
                    if w.stop is not None or w.error is not None:
                        return  # its review has cancelled this task too; stop before reading another piece
                    prefix = w.text[:cut].rstrip()
                    if len(prefix) > w.released:
                        w.chunks += 1
                        w.recording = False
                        w.pending = asyncio.ensure_future(self._judge(w, request, prefix, cut, token))
            finally:
                await stream.aclose()
        if w.result is None:
            raise RuntimeError(f"model {model.label} ended its stream without a result")

    async def _chunk_score(self, w: _Writing, cut: int) -> ChunkScore | None:
        """The chunk head's score of the chunk ending at `cut` (an offset into w.text), from the state of the token
        that covers it, once generation has evaluated that token; None (the reviewer reads as before) without a
        chunk head, or when the draft ended without that state."""
        head = self.reviewer.chunk_head
        if w.states is None or w.states.start is None or head is None:
            return None
        lead = len(w.raw) - len(w.text)  # the white space the draft's text was stripped of
        found = await w.states.state_at(len(w.raw[: lead + cut].encode("utf-8")))
        if found is None:
            return None
        position, states = found
        return head.score(states, position, self.spec.head_threshold)

    async def _judge(self, w: _Writing, request: str, prefix: str, cut: int, token: CancellationToken) -> None:
        """One prefix's verdict, on the record; then released, or the draft stopped."""
        chunk, written = w.chunks, w.pieces
        try:
            score = await self._chunk_score(w, cut)
            result = await self.reviewer.judge(
                request, prefix, token, partial=True, nonce=w.nonce, chunk=chunk, chunk_score=score
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a review that failed never releases anything: the turn fails closed
            w.error = exc
            _cancel(w.writer)
            return
        w.recording = True
        v = result.verdict
        await self.emit(
            ChunkVerdict(
                turn=self.turn,
                source=self.reviewer.name,
                round=w.round,
                chunk=chunk,
                end=len(prefix),
                prefix_sha256=text_sha(prefix),
                draft_tokens=written,
                decision=v.decision,
                categories=v.categories,
                critique=v.critique,
                readable=v.readable,
                raw=result.raw,
                model=self.reviewer.model.label,
                usage=Usage(prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens),
                latency_s=round(result.seconds, 3),
                scores=recorded_scores(v.head_scores),
                flagged=v.flagged,
            )
        )
        if v.approved:  # readable and "approve": an unreadable verdict is never an approval
            start, w.released = w.released, len(prefix)
            await self.emit(
                Released(
                    turn=self.turn, round=w.round, chunk=chunk, start=start, end=len(prefix), content=prefix[start:]
                )
            )
        else:
            w.stop = (chunk, result)
            _cancel(w.writer)


def _cancel(task: asyncio.Future[None] | None) -> None:
    if task is not None and task is not asyncio.current_task():
        task.cancel()


def _prompt_tokens(model: ModelHandle, messages: list[LLMMessage]) -> int:
    """A stopped stream reports no usage: the prompt is counted by the client's own tokenizer, where it can."""
    try:
        return int(model.client.count_tokens(messages))
    except Exception:  # counting is for the figures only; a client that cannot count gives 0
        return 0
