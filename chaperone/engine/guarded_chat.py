"""The guarded chat: user proxy, unaligned assistant and moral reviewer in an AutoGen group chat.

Speaker order is fixed by a selector function (user → assistant → reviewer →
assistant ...), and each turn ends on the reviewer's final verdict (a termination
condition reading the structured verdict, not a keyword match). The engine turns
the team's messages into events for the sinks. Nothing reaches the user unless a
readable "approve" verdict was given on exactly that draft.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from autogen_agentchat.agents import UserProxyAgent
from autogen_agentchat.base import TaskResult, TerminationCondition
from autogen_agentchat.conditions import MaxMessageTermination
from autogen_agentchat.messages import BaseAgentEvent, BaseChatMessage, StopMessage, TextMessage
from autogen_agentchat.teams import SelectorGroupChat
from autogen_core import CancellationToken
from autogen_ext.models.replay import ReplayChatCompletionClient
from loguru import logger
from pydantic import BaseModel

from chaperone.audit.redaction import GLOBAL as GLOBAL_REDACTOR
from chaperone.engine.assistant import DraftingAgent
from chaperone.engine.events import (
    Activity,
    Delivered,
    Draft,
    ErrorEvent,
    Sink,
    TurnFinished,
    TurnResult,
    Usage,
    UserTurn,
    VerdictEvent,
    Watcher,
    Withheld,
    add_usage,
    emit,
)
from chaperone.engine.memory import ConversationMemory
from chaperone.engine.reviewer import ReviewingAgent
from chaperone.engine.verdict import VerdictMessage, text_sha
from chaperone.errors import describe_error


class FinalVerdict(TerminationCondition):
    """Ends a turn when the reviewer approves, or when its verdicts have used up every revision."""

    def __init__(self, reviewer: str, max_revisions: int):
        self._reviewer, self._max_reviews = reviewer, max_revisions + 1
        self._reviews = 0
        self._terminated = False

    @property
    def terminated(self) -> bool:
        return self._terminated

    async def __call__(self, messages: Sequence[BaseAgentEvent | BaseChatMessage]) -> StopMessage | None:
        for msg in messages:
            if isinstance(msg, VerdictMessage) and msg.source == self._reviewer:
                self._reviews += 1
                if msg.content.approved or self._reviews >= self._max_reviews:
                    self._terminated = True
                    reason = "approved" if msg.content.approved else "revisions exhausted"
                    return StopMessage(content=reason, source="FinalVerdict")
        return None

    async def reset(self) -> None:
        self._reviews, self._terminated = 0, False


def _never_asked(prompt: str) -> str:
    raise RuntimeError("the user proxy takes turns from the driver, it is never asked mid-turn")


class GuardedChat:
    """The guarded chat (implements engine.base.Chat): nothing unapproved reaches the user."""

    def __init__(
        self,
        assistant: DraftingAgent,
        reviewer: ReviewingAgent,
        memory: ConversationMemory,
        *,
        user_name: str,
        max_revisions: int,
        fallback: str,
        sinks: list[Sink] | None = None,
        watchers: list[Watcher] | None = None,
    ):
        self.assistant, self.reviewer, self.memory = assistant, reviewer, memory
        self.user_name, self.max_revisions, self.fallback = user_name, max_revisions, fallback
        self.sinks: list[Sink] = list(sinks or [])
        self.watchers: list[Watcher] = list(watchers or [])  # live progress (interactive views), not audited
        self.turns = 0
        self.user_proxy = UserProxyAgent(user_name, input_func=_never_asked)
        self.team = self._new_team()

    def _new_team(self) -> SelectorGroupChat:
        # A new team (with its own runtime) has run no turn: nothing to reset before its first one. Skipping
        # that reset saves a start and stop of its runtime and four messages through it: most of a served
        # request's conversation is its one turn.
        self._team_ran = False
        # Backstop bound on messages per turn in case the selector logic is ever wrong.
        bound = MaxMessageTermination(2 * (self.max_revisions + 1) + 2)
        return SelectorGroupChat(
            [self.user_proxy, self.assistant, self.reviewer],
            # Never called: the selector function always names a speaker.
            model_client=ReplayChatCompletionClient(["<unused>"]),
            selector_func=self._next_speaker,
            termination_condition=FinalVerdict(self.reviewer.name, self.max_revisions) | bound,
            custom_message_types=[VerdictMessage],
            allow_repeated_speaker=False,
        )

    def _next_speaker(self, messages: Sequence[BaseAgentEvent | BaseChatMessage]) -> str:
        last = messages[-1]
        if last.source == self.assistant.name:
            return self.reviewer.name
        return self.assistant.name  # after the user's turn, or after a verdict that asks for a revision

    def _watch(self, turn: int) -> None:
        """Route the agents' live progress of this turn to the watchers (streaming drafts only if watched)."""

        def notify(stage: str, round_: int, tokens: int, piece: str) -> None:
            activity = Activity(turn=turn, stage=stage, round=round_, tokens=tokens, piece=piece)
            for watcher in self.watchers:
                watcher(activity)

        hook = notify if self.watchers else None
        self.assistant.on_activity = self.reviewer.on_activity = hook

    async def _emit(self, event: BaseModel) -> None:
        await emit(self.sinks, event)

    async def _consume(self, turn: int, text: str, token: CancellationToken, state: _TurnState) -> None:
        """Run the team on one user turn and turn its messages into events."""
        task = TextMessage(content=text, source=self.user_name)
        async for item in self.team.run_stream(task=task, cancellation_token=token):
            if isinstance(item, TaskResult):
                continue  # the last item; let the stream finish so the team is idle again
            if item.source == self.assistant.name and isinstance(item, TextMessage):
                state.drafts += 1
                state.last_draft = item.content
                state.last_cut = item.metadata.get("finish_reason") == "length"
                state.approved_sha = None
                u = _usage(item, state.usage)
                await self._emit(
                    Draft(
                        turn=turn,
                        source=item.source,
                        round=state.drafts,
                        content=item.content,
                        model=item.metadata.get("model", ""),
                        usage=u,
                        latency_s=float(item.metadata.get("latency_s", 0)),
                        cut=state.last_cut,
                    )
                )
            elif item.source == self.reviewer.name and isinstance(item, VerdictMessage):
                state.verdicts += 1
                v = item.content
                state.categories.extend(c for c in v.categories if c not in state.categories)
                if (
                    v.approved
                    and state.last_draft is not None
                    and item.metadata.get("draft_sha256") == text_sha(state.last_draft)
                ):
                    state.approved_sha = item.metadata["draft_sha256"]
                u = _usage(item, state.usage)
                await self._emit(
                    VerdictEvent(
                        turn=turn,
                        source=item.source,
                        round=state.drafts,
                        decision=v.decision,
                        categories=v.categories,
                        critique=v.critique,
                        readable=v.readable,
                        raw=item.metadata.get("raw", ""),
                        model=item.metadata.get("model", ""),
                        usage=u,
                        latency_s=float(item.metadata.get("latency_s", 0)),
                        scores=_finite(v.head_scores),
                        flagged=v.flagged,
                    )
                )

    async def send(self, text: str, cancellation_token: CancellationToken | None = None) -> TurnResult:
        """Run one user turn through draft → review → (revise)* and return how it ended."""
        self.turns += 1
        turn = self.turns
        started = time.perf_counter()
        await self._emit(UserTurn(turn=turn, source=self.user_name, content=text))
        state = _TurnState()
        outcome, reason = "withheld", "revisions exhausted"
        error: str | None = None
        if self._team_ran:
            await self.team.reset()
        self._team_ran = True
        token = cancellation_token or CancellationToken()
        self.assistant.turn_token = self.reviewer.turn_token = token
        self._watch(turn)
        consumer = asyncio.ensure_future(self._consume(turn, text, token, state))
        try:
            # Shielded: on cancellation we first cancel the agents' model calls, then wait for the team to stop.
            await asyncio.shield(consumer)
        except (asyncio.CancelledError, KeyboardInterrupt):
            outcome, reason = "cancelled", "turn cancelled"
            error = "turn cancelled before review finished"
            token.cancel()
            with contextlib.suppress(BaseException):
                await consumer
            await self._emit(ErrorEvent(turn=turn, source="chaperone", message=error))
        except Exception as exc:  # a failed model call ends the turn, withheld, never a traceback to the user
            message = GLOBAL_REDACTOR.text(describe_error(exc))
            logger.warning("turn {} failed: {}", turn, message)
            logger.opt(exception=exc).debug("turn {} failure details", turn)  # the log file only
            # A draft still waiting for its verdict: the reviewer's call failed. Fail closed either way.
            failed = "the review" if state.drafts > state.verdicts else "the assistant"
            outcome, reason, error = "error", f"because {failed} failed: {message}", message
            await self._emit(ErrorEvent(turn=turn, source="chaperone", message=message))
        drafts, last_draft, approved_sha = state.drafts, state.last_draft, state.approved_sha
        usage, categories = state.usage, state.categories

        revisions = max(drafts - 1, 0)
        cut = False
        if outcome == "withheld" and last_draft is not None and approved_sha == text_sha(last_draft):
            outcome, reason, answer, cut = "approved", "", last_draft, state.last_cut
            await self._emit(Delivered(turn=turn, content=last_draft, revisions=revisions, cut=cut))
            self.memory.add(text, last_draft)
        else:
            answer = self.fallback
            if outcome == "withheld" and drafts == 0:
                reason = "no draft was produced"
            await self._emit(Withheld(turn=turn, content=self.fallback, revisions=revisions, reason=reason))
            if outcome != "cancelled":  # a cancelled turn is not part of the conversation the assistant remembers
                self.memory.add(text, self.fallback)
        if outcome in ("cancelled", "error"):
            # A team stopped mid-turn keeps half a turn of state in its runtime: the next turn gets a fresh one.
            self.team = self._new_team()
        finished = TurnFinished(
            turn=turn,
            outcome=outcome,
            revisions=revisions,
            categories=categories,
            usage_by_agent=usage,
            seconds=round(time.perf_counter() - started, 3),
        )
        await self._emit(finished)
        if outcome == "cancelled":
            raise asyncio.CancelledError("turn cancelled")
        return TurnResult.of(
            finished, text=answer, delivered=outcome == "approved", reason=reason, error=error, cut=cut
        )


@dataclass
class _TurnState:
    drafts: int = 0
    verdicts: int = 0
    last_draft: str | None = None
    last_cut: bool = False  # the last draft stopped at the token limit
    approved_sha: str | None = None  # set only by a readable approval of exactly last_draft
    usage: dict[str, Usage] = field(default_factory=dict)
    categories: list[str] = field(default_factory=list)


def _usage(msg: BaseChatMessage, totals: dict[str, Usage]) -> Usage:
    u = Usage.of(msg.models_usage)
    add_usage(totals, msg.source, u)
    return u


def _finite(scores: dict[str, float] | None) -> dict[str, float | None] | None:
    """The head's scores as the transcript records them (JSON has no NaN: an unreadable one is null)."""
    if scores is None:
        return None
    return {k: round(v, 4) if math.isfinite(v) else None for k, v in scores.items()}
