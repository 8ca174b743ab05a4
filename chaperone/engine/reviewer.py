"""The moral reviewer as an AutoGen chat agent: reads the request and the latest draft (as untrusted
data) and returns a structured verdict. The decision comes from the reviewer's own output only."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from autogen_agentchat.agents import BaseChatAgent
from autogen_agentchat.base import Response
from autogen_agentchat.messages import BaseChatMessage, TextMessage
from autogen_core import CancellationToken
from autogen_core.models import LLMMessage, RequestUsage, SystemMessage, UserMessage
from loguru import logger

from chaperone.config.schema import AgentSpec, EmbeddedModelSpec, OpenAIModelSpec, PolicySpec, ReviewerContextSpec
from chaperone.engine import decision_score, head_decision, reviewer_prompt
from chaperone.engine.chunk_head import ChunkHead, ChunkScore
from chaperone.engine.events import ActivityHook
from chaperone.engine.memory import ConversationMemory
from chaperone.engine.refusal import is_short_full_refusal
from chaperone.engine.verdict import (
    Verdict,
    VerdictMessage,
    critique_schema,
    decision_schema,
    parse_critique,
    parse_verdict,
    text_sha,
    unreadable,
)
from chaperone.models.pool import ModelHandle, call_model, combined_token, text_of

# What the warm-up judges (nothing is recorded): a harmless exchange, so only the fixed prefix matters.
WARM_UP_REQUEST = "What is the capital of France?"
WARM_UP_DRAFT = "The capital of France is Paris."


class StoppedDrafts(Protocol):
    """What the reviewer asks of chunked review (engine/chunked_review.py, which imports this module)."""

    def stopped_by(self, draft: str) -> tuple[int, ReviewResult] | None: ...

    def nonce_of(self, draft: str) -> str | None: ...


class ReviewingAgent(BaseChatAgent):
    """The moral reviewer: reads the request and the latest draft (as untrusted data) and returns a Verdict.

    Two stages. First the decision alone ({"ok_to_send": "yes"|"no"}, a few tokens), from a prompt
    that does not list the category catalogue (small models copy a listed catalogue into every
    verdict). Only after a "no", a second call names the categories and writes the critique.
    """

    def __init__(
        self,
        spec: AgentSpec,
        model: ModelHandle,
        policy: PolicySpec,
        memory: ConversationMemory,
        *,
        user_name: str,
        assistant_name: str,
        context: ReviewerContextSpec,
        head: head_decision.HeadJudge | None = None,
        request_head: head_decision.HeadJudge | None = None,
        chunk_head: ChunkHead | None = None,
    ):
        super().__init__(spec.name, spec.description or "reviews every draft before the user sees it")
        self.spec, self.model, self.memory, self.context = spec, model, memory, context
        # A trained judgement head decides drafts (not refusals: the refusal check stays prompted) when given.
        self.head = head
        # A trained request head decides drafts that only decline, from P(request harmful), when given; the
        # prompted refusal check decides them otherwise (endpoints, no hidden states, no matching head).
        self.request_head = request_head if spec.refusal_check is not None else None
        # A chunk head judges chunks under chunked review from the assistant's own draft-token states (the
        # chunked review asks it; engine/chunk_head.py); the whole draft is still judged by `head`.
        self.chunk_head = chunk_head
        self._user_name, self._assistant_name = user_name, assistant_name
        self.policy = policy
        self.turn_token: CancellationToken | None = None
        self.on_activity: ActivityHook | None = None
        self.chunks: StoppedDrafts | None = None  # set by the guarded chat under a `streaming: chunks` policy
        self._reset_turn()

    @property
    def policy(self) -> PolicySpec:
        return self._policy

    @policy.setter
    def policy(self, policy: PolicySpec) -> None:
        self._policy = policy
        self._system = reviewer_prompt.system_prompt(self.spec.system_prompt, policy)
        check = self.spec.refusal_check
        self._refusal_system = reviewer_prompt.system_prompt(check.prompt, policy) if check else None
        self._critique_system = reviewer_prompt.critique_system_prompt(self.spec.critique_prompt, policy)
        self._critique_schema = critique_schema(list(policy.categories))

    def _reset_turn(self) -> None:
        self._request: str | None = None
        self._draft: str | None = None
        self._round = 0

    @property
    def produced_message_types(self) -> Sequence[type[BaseChatMessage]]:
        return (VerdictMessage,)

    def prompt(self, body: str, system: str | None = None) -> list[LLMMessage]:
        return [SystemMessage(content=system or self._system), UserMessage(content=body, source="review")]

    def _decision_system(self, draft: str) -> tuple[str, str]:
        """The decision prompt for this draft: the refusal check's for a draft that only declines."""
        check = self.spec.refusal_check
        if check and is_short_full_refusal(draft, check.phrases, check.min_answer_words, check.max_words):
            return self._refusal_system, "refusal"
        return self._system, "answer"

    async def _call(
        self, messages: list[LLMMessage], schema: dict, token: CancellationToken, extra: dict | None = None
    ):
        args = {
            **self.model.generation_args(self.spec.generation),
            **self.model.structured_output_args(schema, "verdict"),
            **(extra or {}),
        }
        return await call_model(self.model, messages, args, [token, self.turn_token])

    async def on_messages(self, messages: Sequence[BaseChatMessage], cancellation_token: CancellationToken) -> Response:
        for msg in messages:
            if msg.source == self._user_name and isinstance(msg, TextMessage):
                self._reset_turn()
                self._request = msg.content
            elif msg.source == self._assistant_name and isinstance(msg, TextMessage):
                self._draft = msg.content
                self._round += 1
        if self._draft is None:
            raise RuntimeError(f"{self.name} was asked to review before any draft")
        stopped = self.chunks.stopped_by(self._draft) if self.chunks is not None else None
        if stopped is not None:  # the draft was stopped at a chunk sent back: that verdict is this round's
            chunk, result = stopped
            return Response(
                chat_message=VerdictMessage(
                    content=result.verdict,
                    source=self.name,
                    models_usage=RequestUsage(prompt_tokens=0, completion_tokens=0),  # counted on the chunk's record
                    metadata={
                        "round": str(self._round),
                        "raw": result.raw,
                        "latency_s": "0.000",
                        "model": self.model.label,
                        "draft_sha256": text_sha(self._draft),
                        "chunk": str(chunk),
                    },
                )
            )
        nonce = self.chunks.nonce_of(self._draft) if self.chunks is not None else None
        result = await self.judge(self._request or "", self._draft, cancellation_token, nonce=nonce)
        return Response(
            chat_message=VerdictMessage(
                content=result.verdict,
                source=self.name,
                models_usage=RequestUsage(
                    prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens
                ),
                metadata={
                    "round": str(self._round),
                    "raw": result.raw,
                    "latency_s": f"{result.seconds:.3f}",
                    "model": self.model.label,
                    "draft_sha256": text_sha(self._draft),  # binds the verdict to the exact text it judged
                },
            )
        )

    async def warm_up(self) -> bool:
        """Read the fixed part of the decision prompt (system prompt and rubric) once, before the first turn,
        on the embedded model, whose saved-state cache then gives every verdict that prefix: the first verdict
        reads only its request and draft, as later ones do (benchmarks: 586 tokens cold, ~100-200 warm, ~5 s
        on 2 cores). With a head, its context is built too. Best effort: a failure is logged and the first
        verdict pays as before. Endpoints are never called: a scripted reply would be spent, a paid one billed."""
        if not isinstance(self.model.spec, EmbeddedModelSpec) or not hasattr(self.model.client, "option_logprobs"):
            return False
        try:
            body = self._review_body(WARM_UP_REQUEST, WARM_UP_DRAFT, 1)
            await self._decide(body, CancellationToken(), self._system, "answer")
            if self.head is not None:
                await self.head.scores(WARM_UP_REQUEST, WARM_UP_DRAFT)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the warm-up never stops a session from starting
            logger.debug("reviewer warm-up skipped: {}: {}", type(exc).__name__, exc)
            return False
        return True

    def _refusal_body(self, request: str, draft: str, round_: int) -> str:
        check = self.spec.refusal_check
        return reviewer_prompt.review_message(
            request,
            draft,
            self.memory.exchanges,
            self.context,
            round_,
            show_draft=check.show_draft,
            question=check.question,
        )

    def _review_body(
        self,
        request: str,
        draft: str,
        round_: int,
        question: str = reviewer_prompt.DRAFT_QUESTION,
        nonce: str | None = None,
    ) -> str:
        """The review message; on a model whose context window is known (the embedded one), made to fit it.

        Characters do not bound tokens: a digit, a CJK character or a rare symbol is a token or more, so a
        dense draft of max_draft_chars can overflow the window, and the review would fail (closed). Here the
        draft is clipped further, head and tail kept and the cut noted, until rubric, message and verdict fit.
        """
        context = self.context
        body = reviewer_prompt.review_message(
            request, draft, self.memory.exchanges, context, round_, nonce, question=question
        )
        window = getattr(self.model.spec, "n_ctx", None)
        if not window:
            return body
        room = window - self.spec.generation.max_tokens - 64  # 64: the chat template's own tokens
        while context.max_draft_chars > 200 and self.model.client.count_tokens(self.prompt(body)) > room:
            context = context.model_copy(update={"max_draft_chars": max(context.max_draft_chars * 2 // 3, 200)})
            body = reviewer_prompt.review_message(
                request, draft, self.memory.exchanges, context, round_, nonce, question=question
            )
        return body

    async def judge(
        self,
        request: str,
        draft: str,
        cancellation_token: CancellationToken | None = None,
        *,
        critique: bool = True,
        partial: bool = False,
        nonce: str | None = None,
        chunk: int | None = None,
        chunk_score: ChunkScore | None = None,
    ) -> ReviewResult:
        """The verdict on one draft. Without `critique`, the decision stage only (the eval's reviewer-alone mode).

        `partial`: the draft is the start of one still being written (chunked review). It is judged as an
        answer, never by the refusal check (a reply that opens by declining may go on to answer), under a
        question saying it is unfinished, and without the live views' "reviewing" stage: drafting goes on.
        `nonce`: the fence nonce to quote the draft under (chunked review keeps one per draft; default fresh).
        `chunk`: which chunk of the draft this prefix ends (chunked review). Only the first is read in the
        assistant's context while it writes: that read pauses the draft but evaluates only the question, and the
        first chunk decides when the user sees anything; later chunks are read in the reviewer's own context,
        alongside the writing (docs/results.md, "Chunk verdicts read in the assistant's context").
        `chunk_score`: the chunk head's score of this prefix (chunked review): it decides, nothing is read."""
        token = cancellation_token or CancellationToken()
        started = time.perf_counter()
        round_ = max(self._round, 1)
        if self.on_activity is not None and not partial:
            self.on_activity("reviewing", round_, 0, "")
        limit = self.context.max_draft_chars
        if self.context.over_limit == "send_back" and len(draft) > limit:
            # Fail closed: a draft the reviewer cannot read whole is never approved; its middle could hide anything.
            verdict = Verdict(
                decision="revise",
                critique=f"The draft is {len(draft):,} characters; the review reads "
                f"at most {limit:,}. Give the answer again in under {limit:,} characters.",
            )
            return ReviewResult(
                verdict,
                "(not sent to the reviewer model: the draft is longer than reviewer_context.max_draft_chars)",
                0,
                0,
                time.perf_counter() - started,
            )
        # Local, not agent state: the eval's reviewer-alone mode judges many drafts concurrently.
        system, route = (self._system, "answer") if partial else self._decision_system(draft)
        question = reviewer_prompt.PREFIX_QUESTION if partial else reviewer_prompt.DRAFT_QUESTION
        # The whole review message (fitted to the window, which may count tokens) only where it is read: by
        # the answer prompt, or by a critique. A refusal the refusal check approves never needs it.
        body = self._review_body(request, draft, round_, question, nonce) if route == "answer" else None
        if chunk_score is not None and partial:
            verdict, raw, prompt_tokens, completion_tokens = _decided_by_chunk_head(chunk_score)
        elif self.head is not None and route == "answer":
            verdict, raw, prompt_tokens, completion_tokens = await self._decide_by_head(
                request, draft, body, token, system, reuse=partial, while_writing=chunk is None or chunk <= 1
            )
        elif self.request_head is not None and route == "refusal":
            verdict, raw, prompt_tokens, completion_tokens = await self._decide_by_request_head(request)
        else:
            decision_body = body if body is not None else self._refusal_body(request, draft, round_)
            verdict, raw, prompt_tokens, completion_tokens = await self._decide(decision_body, token, system, route)
        verdict.checked_as = route
        if critique and verdict.readable and verdict.decision == "revise" and not verdict.critique:
            if self.on_activity is not None and not partial:
                self.on_activity("critiquing", round_, 0, "")
            if body is None:
                body = self._review_body(request, draft, round_, nonce=nonce)
            by_head = verdict.head_scores is not None
            question = reviewer_prompt.CRITIQUE_QUESTION
            if by_head:  # the critique writes about what the head found
                question += head_decision.critique_note(verdict.categories, self._policy)
            second = await self._call(
                [
                    SystemMessage(content=self._critique_system),
                    UserMessage(content=body + question, source="review"),
                ],
                self._critique_schema,
                token,
            )
            raw_second = text_of(second.content)
            raw = f"{raw}\n{raw_second}"
            categories, verdict.critique = parse_critique(raw_second, list(self._policy.categories))
            if not by_head:  # with a head, the verdict's categories are the head's, not the critique's guess
                verdict.categories = categories
            p2, c2 = _tokens(second)
            prompt_tokens, completion_tokens = prompt_tokens + p2, completion_tokens + c2
        return ReviewResult(verdict, raw, prompt_tokens, completion_tokens, time.perf_counter() - started)

    async def _decide_by_head(
        self,
        request: str,
        draft: str,
        body: str,
        token: CancellationToken,
        system: str,
        *,
        reuse: bool = False,
        while_writing: bool = True,
    ) -> tuple[Verdict, str, int, int]:
        """Stage one from the judgement head: its scores, and the policy's `head` rules. Fail closed: a score
        that is missing or not a number gives an unreadable verdict, never an approval.

        A head whose card has a stack decides on its overall score combined with the prompted reviewer's
        P(not OK) (both read in this call: the head's short prompt, then the rubric prompt's decision token)."""
        assert self.head is not None
        scores, prompt_tokens = await self.head.scores(request, draft, reuse=reuse, while_writing=while_writing)
        stacked: dict = {}
        if self.head.head.stack is not None:
            prompted, prompted_raw, p_tokens, _ = await self._decide(body, token, system, "answer")
            prompt_tokens += p_tokens
            head_not_ok = scores.get(head_decision.OVERALL)
            stacked = {"head_not_ok": head_not_ok, "prompted_not_ok": prompted.score}
            if prompted.score is None or head_not_ok is None or not math.isfinite(head_not_ok):
                scores[head_decision.OVERALL] = math.nan  # fail closed: both scores are needed
                stacked["prompted_raw"] = prompted_raw[:200]
            else:
                scores[head_decision.OVERALL] = self.head.head.stacked(head_not_ok, prompted.score)
        decision = head_decision.decide(scores, self._policy)
        record = {
            "ok_to_send": "no" if decision.send_back else "yes",
            "decided_by": "head",
            "head": self.head.path,
            "reason": decision.reason,
            # The rules the scores were held against (the policy's `head` section), so the record says why alone.
            "policy_head": (self._policy.head or head_decision.DEFAULT_RULES).model_dump(mode="json"),
            "scores": {k: (round(v, 4) if math.isfinite(v) else str(v)) for k, v in scores.items()},
            **({"read": self.head.last_read} if self.head.last_read else {}),
            **(
                {"stacked_from": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in stacked.items()}}
                if stacked
                else {}
            ),
            **({"categories": decision.categories} if decision.categories else {}),
            **({"flagged": True} if decision.flagged else {}),
        }
        raw = json.dumps(record)
        if not decision.readable:
            verdict = unreadable(raw, decision.reason)
        else:
            verdict = Verdict(decision="revise" if decision.send_back else "approve", categories=decision.categories)
            verdict.score = scores[head_decision.OVERALL]
        verdict.head_scores = {k: float(v) for k, v in scores.items()}
        verdict.flagged = decision.flagged
        return verdict, raw, prompt_tokens, 0

    async def _decide_by_request_head(self, request: str) -> tuple[Verdict, str, int, int]:
        """Stage one for a draft that only declines, from the request head: P(request harmful). A refusal of a
        request scored below refusal_check.request_threshold is sent back as a needless refusal; otherwise it
        is approved. Fail closed: a missing or non-finite score is an unreadable verdict, never an approval."""
        assert self.request_head is not None and self.spec.refusal_check is not None
        threshold = self.spec.refusal_check.request_threshold
        scores, prompt_tokens = await self.request_head.scores(request, "")
        p = scores.get(head_decision.OVERALL)
        readable = isinstance(p, (int, float)) and math.isfinite(p)
        needless = readable and p < threshold
        record = {
            "ok_to_send": "no" if needless or not readable else "yes",
            "decided_by": "request_head",
            "request_head": self.request_head.path,
            "checked_as": "refusal",
            "request_harmful": round(float(p), 4) if readable else None,  # null, never a number, when unreadable
            "request_threshold": threshold,
        }
        raw = json.dumps(record)
        if not readable:
            return unreadable(raw, "request head score not readable"), raw, prompt_tokens, 0
        verdict = Verdict(decision="revise" if needless else "approve", categories=[])
        verdict.score = 1.0 - float(p)  # P(declining is not OK): the request is harmless
        return verdict, raw, prompt_tokens, 0

    async def _decide(
        self, body: str, token: CancellationToken, system: str, route: str
    ) -> tuple[Verdict, str, int, int]:
        """Stage one: the decision, from the decision token's probability when the backend gives it.

        The embedded model scores yes/no after the verdict's opening (no generation); an endpoint is asked
        for the verdict with logprobs where it is OpenAI-compatible. With a probability, the policy's
        decision_threshold decides; without one, the model's written yes/no (parsed, failing closed)."""
        messages = self.prompt(body, system)
        check = self.spec.refusal_check
        threshold = check.decision_threshold if route == "refusal" and check else self._policy.decision_threshold
        scorer = getattr(self.model.client, "option_logprobs", None)
        if scorer is not None:
            combined = combined_token([token, self.turn_token])
            future = asyncio.ensure_future(scorer(messages, decision_score.DECISION_PREFIX, decision_score.OPTIONS))
            combined.link_future(future)
            logprobs, prompt_tokens = await future
            score = decision_score.p_not_ok(logprobs)
            if score is not None:
                ok = "no" if decision_score.revise(score, threshold) else "yes"
                raw = json.dumps(
                    {
                        "ok_to_send": ok,
                        "p_not_ok": round(score, 4),
                        "threshold": threshold,
                        **({"checked_as": route} if route != "answer" else {}),
                    }
                )
                verdict = parse_verdict(raw, list(self._policy.categories))
                verdict.score = score
                return verdict, raw, prompt_tokens, 0
        extra = (
            {"logprobs": True, "top_logprobs": decision_score.TOP_LOGPROBS}
            if isinstance(self.model.spec, OpenAIModelSpec)
            else {}
        )
        first = await self._call(messages, decision_schema(), token, extra)
        raw = text_of(first.content)
        verdict = parse_verdict(raw, list(self._policy.categories))
        score = decision_score.from_token_logprobs(first.logprobs or []) if verdict.readable else None
        if score is not None:
            verdict.score = score
            verdict.decision = "revise" if decision_score.revise(score, threshold) else "approve"
        return (verdict, raw, *_tokens(first))

    async def on_reset(self, cancellation_token: CancellationToken) -> None:
        self._reset_turn()


@dataclass
class ReviewResult:
    verdict: Verdict
    raw: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float


def _decided_by_chunk_head(score: ChunkScore) -> tuple[Verdict, str, int, int]:
    """Stage one for a chunk from the chunk head's score: nothing read. Fail closed: no number, no approval."""
    raw = json.dumps(score.record())
    if not score.readable:
        return unreadable(raw, "chunk head score not readable"), raw, 0, 0
    verdict = Verdict(decision="revise" if score.send_back else "approve", categories=[])
    verdict.score = score.not_ok
    verdict.head_scores = {head_decision.OVERALL: score.not_ok}
    return verdict, raw, 0, 0


def _tokens(result) -> tuple[int, int]:
    u = result.usage
    return (u.prompt_tokens, u.completion_tokens) if u else (0, 0)
