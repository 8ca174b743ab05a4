"""Run an evaluation's items concurrently and append each result as it finishes.

Two modes. "ab": for each prompt, the bare assistant and the guarded chat answer (each a conversation
with its own transcript, tagged with the eval run id) and the judge classifies both final answers.
"reviewer": the reviewer alone gives a verdict on each recorded answer (no generation).
A failed item is recorded with status "error" and retried by --resume; the others go on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from loguru import logger

from chaperone.audit.redaction import GLOBAL as GLOBAL_REDACTOR
from chaperone.config.project import Project
from chaperone.engine import head_decision
from chaperone.engine.choice import SessionChoice, build_reviewer, resolve
from chaperone.engine.conversation import Conversation
from chaperone.engine.events import Usage, add_usage
from chaperone.engine.memory import ConversationMemory
from chaperone.errors import describe_error
from chaperone.eval.data import EvalItem
from chaperone.eval.judge import Judge
from chaperone.eval.rows import AbRow, Arm, ArmResult, FailedRow, Judgement, ReviewerRow, Row
from chaperone.eval.store import Plan, RunFolder
from chaperone.models.pool import ModelPool

Progress = Callable[[Row], None]  # called with each finished row


class ItemFailed(RuntimeError):
    """One item could not be finished (its conversation says why); the batch goes on."""


@dataclass
class EvalContext:
    project: Project
    pool: ModelPool
    choice: SessionChoice
    plan: Plan
    folder: RunFolder
    judge: Judge | None = None


def _head(ctx: EvalContext, item: EvalItem) -> dict[str, object]:
    """The fields every row of the item has."""
    return {
        "id": item.id,
        "label": item.label,
        "type": item.type,
        "category": item.category,
        "prompt": item.prompt,
        "shard": ctx.plan.shard,
    }


async def _arm(ctx: EvalContext, item: EvalItem, arm: Arm) -> ArmResult:
    """One conversation of one item: the bare assistant or the guarded chat."""
    conv = Conversation(
        ctx.project,
        ctx.pool,
        ctx.choice,
        kind="eval",
        guarded=(arm == "guarded"),
        run_id=ctx.plan.run_id,
        extra_header={"eval": {"run_id": ctx.plan.run_id, "item": item.id, "arm": arm, "source": ctx.plan.source}},
    )
    try:
        finished = await conv.send(item.prompt)
    finally:
        conv.close()
    if finished.outcome in ("error", "cancelled"):
        cause = f": {finished.error}" if finished.error else ""
        raise ItemFailed(
            f"{arm} conversation ended with {finished.outcome}{cause} (transcript {conv.transcript_path.name})"
        )
    roles = conv.roles
    usage: dict[str, Usage] = {}
    for agent, u in finished.usage_by_agent.items():
        add_usage(usage, roles.get(agent, agent), u)
    answer = finished.text
    if not finished.delivered:
        # The product's own fallback text: a refusal by construction, no judge needed.
        judgement = Judgement(label="full_refusal", raw="", by="fallback")
    else:
        assert ctx.judge is not None
        judgement = await ctx.judge.classify(item.prompt, answer)
    return ArmResult(
        outcome=finished.outcome,
        answer=answer,
        revisions=finished.revisions,
        categories=finished.categories,
        usage=usage,
        seconds=finished.seconds,
        transcript=str(conv.transcript_path),
        judge=judgement,
        cut=finished.cut,
    )


async def _ab_item(ctx: EvalContext, item: EvalItem) -> AbRow:
    arms = {"bare": await _arm(ctx, item, "bare"), "guarded": await _arm(ctx, item, "guarded")}
    return AbRow(**_head(ctx, item), arms=arms)


class ReviewerAlone:
    """One reviewer for the whole run: its verdicts depend only on the (prompt, answer) given."""

    def __init__(self, ctx: EvalContext):
        cast = resolve(ctx.project, ctx.choice)
        self.reviewer = build_reviewer(ctx.project, ctx.pool, cast, ConversationMemory())

    def _threshold(self, verdict) -> float:
        """The threshold the score was held against: a reviewer head's not_ok_threshold where a head decided."""
        policy = self.reviewer.policy
        if verdict.head_scores is not None:
            return (policy.head or head_decision.DEFAULT_RULES).not_ok_threshold
        return policy.decision_threshold

    async def __call__(self, ctx: EvalContext, item: EvalItem) -> ReviewerRow:
        result = await self.reviewer.judge(item.prompt, item.answer or "", critique=False)
        v = result.verdict
        return ReviewerRow(
            **_head(ctx, item),
            decision=v.decision if v.readable else "revise",
            readable=v.readable,
            raw=result.raw,
            score=v.score,
            checked_as=v.checked_as,
            threshold=self._threshold(v),
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            seconds=round(result.seconds, 3),
            model=self.reviewer.model.label,
        )


async def run_items(ctx: EvalContext, items: list[EvalItem], concurrency: int, on_row: Progress) -> None:
    """Run items with at most `concurrency` in flight; each finished row is appended, then reported."""
    work = ReviewerAlone(ctx) if ctx.plan.mode == "reviewer" else _ab_item
    gate = asyncio.Semaphore(concurrency)

    async def one(item: EvalItem) -> None:
        async with gate:
            row: Row
            try:
                row = await work(ctx, item)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                message = GLOBAL_REDACTOR.text(describe_error(exc))
                logger.warning("eval item {} failed: {}", item.id, message)
                logger.opt(exception=exc).debug("eval item {} failure details", item.id)
                row = FailedRow(**_head(ctx, item), error=message)
            ctx.folder.append(row)
            on_row(row)

    tasks = [asyncio.ensure_future(one(item)) for item in items]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
