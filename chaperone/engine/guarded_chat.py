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
import time
from collections.abc import Callable, Sequence
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
from chaperone.engine import chunked_review
from chaperone.engine.assistant import DraftingAgent
from chaperone.engine.chunked_review import ChunkedReview
from chaperone.engine.events import (
    Activity,
    ChunkVerdict,
    Delivered,
    Draft,
    ErrorEvent,
    Released,
    Sink,
    TurnFinished,
    TurnResult,
    Usage,
    UserTurn,
    VerdictEvent,
    Watcher,
    Withdrawn,
    Withheld,
    add_usage,
    emit,
    recorded_scores,
)
from chaperone.engine.memory import ConversationMemory
from chaperone.engine.reviewer import ReviewingAgent
from chaperone.engine.verdict import VerdictMessage, text_sha
from chaperone.errors import describe_error


class FinalVerdict(TerminationCondition):
    """Ends a turn when the reviewer approves, or when its verdicts have used up every revision.

    With chunked review, also when a draft part of which was already shown is sent back and the chat's
    reader cannot take shown text back (`ends_on_withdrawal`: a stream); a revision could not be shown."""

    def __init__(
        self,
        reviewer: str,
        max_revisions: int,
        assistant: str = "",
        ends_on_withdrawal: Callable[[], bool] = lambda: False,
    ):
        self._reviewer, self._max_reviews = reviewer, max_revisions + 1
        self._assistant, self._ends_on_withdrawal = assistant, ends_on_withdrawal
        self._reviews = 0
        self._released = False  # the last draft had text released while it was written
        self._terminated = False

    @property
    def terminated(self) -> bool:
        return self._terminated

    async def __call__(self, messages: Sequence[BaseAgentEvent | BaseChatMessage]) -> StopMessage | None:
        for msg in messages:
            if isinstance(msg, TextMessage) and msg.source == self._assistant:
                self._released = msg.metadata.get("released_chars", "0") not in ("", "0")
            if isinstance(msg, VerdictMessage) and msg.source == self._reviewer:
                self._reviews += 1
                withdrawn = not msg.content.approved and self._released and self._ends_on_withdrawal()
                if msg.content.approved or self._reviews >= self._max_reviews or withdrawn:
                    self._terminated = True
                    reason = "approved" if msg.content.approved else "revisions exhausted"
                    return StopMessage(content="shown text withdrawn" if withdrawn else reason, source="FinalVerdict")
        return None

    async def reset(self) -> None:
        self._reviews, self._released, self._terminated = 0, False, False


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
        # A reader that cannot take back text it was shown (a stream) ends the turn when shown text is
        # withdrawn, instead of revising: set by Conversation.stream_to.
        self.stop_on_withdraw = False
        self.chunks: ChunkedReview | None = None  # this turn's chunked review, under a `streaming: chunks` policy
        self._state = _TurnState()
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
            termination_condition=FinalVerdict(
                self.reviewer.name, self.max_revisions, self.assistant.name, lambda: self.stop_on_withdraw
            )
            | bound,
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

    def _arm_chunks(self, turn: int) -> None:
        """Chunked review for this turn when the policy in force asks for it (a /policy switch may change it)."""
        policy = self.reviewer.policy
        chunks = None
        if policy.streaming == "chunks":
            why = chunked_review.unavailable(self.assistant.model, self.reviewer.model)
            if why is None:
                chunks = ChunkedReview(self.reviewer, policy.chunks, self._emit_chunk_event)
                chunks.begin_turn(turn)
            elif turn == 1 or self.chunks is not None:
                logger.warning(
                    "policy '{}' asks for chunked review, but {}: drafts are reviewed whole", policy.name, why
                )
        self.chunks = self.assistant.chunks = self.reviewer.chunks = chunks

    async def _emit_chunk_event(self, event: BaseModel) -> None:
        if isinstance(event, ChunkVerdict):  # the reviewer's work on drafts being written counts in the turn
            add_usage(self._state.usage, event.source, event.usage)
        elif isinstance(event, Released):  # what the user has seen of the draft being written, as it happens
            shown = self._state.shown
            shown[event.round] = (shown.get(event.round, "") if event.start else "") + event.content
        await self._emit(event)

    async def _withdraw(self, turn: int, state: _TurnState, reason: str, round_: int | None = None) -> None:
        """Text shown of a round's draft (of every round's, without `round_`) will not be delivered: say so, once.

        Kept per round: the next draft may release its first prefix before this loop reads the verdict that
        sent the previous one back."""
        for r in [round_] if round_ is not None else sorted(state.shown):
            shown = state.shown.pop(r, "")
            if shown:
                state.withdrawn = True
                await self._emit(Withdrawn(turn=turn, round=r, content=shown, reason=reason))

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
                stopped = item.metadata.get("stopped_at_chunk")
                saved = item.metadata.get("tokens_saved")
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
                        stopped_at_chunk=int(stopped) if stopped else None,
                        tokens_saved=int(saved) if stopped and saved else None,
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
                        scores=recorded_scores(v.head_scores),
                        flagged=v.flagged,
                        chunk=int(item.metadata["chunk"]) if item.metadata.get("chunk") else None,
                    )
                )
                if not v.approved:
                    what = f"chunk {item.metadata['chunk']}" if item.metadata.get("chunk") else "the whole draft"
                    await self._withdraw(turn, state, f"the reviewer sent back {what}", state.drafts)

    async def send(self, text: str, cancellation_token: CancellationToken | None = None) -> TurnResult:
        """Run one user turn through draft → review → (revise)* and return how it ended."""
        self.turns += 1
        turn = self.turns
        started = time.perf_counter()
        await self._emit(UserTurn(turn=turn, source=self.user_name, content=text))
        state = self._state = _TurnState()
        outcome, reason = "withheld", "revisions exhausted"
        error: str | None = None
        if self._team_ran:
            await self.team.reset()
        self._team_ran = True
        token = cancellation_token or CancellationToken()
        self.assistant.turn_token = self.reviewer.turn_token = token
        self._watch(turn)
        self._arm_chunks(turn)
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
            # A draft still waiting for its verdict, or a chunk's: the reviewer's call failed. Fail closed either way.
            review = state.drafts > state.verdicts or (self.chunks is not None and self.chunks.review_failed)
            failed = "the review" if review else "the assistant"
            outcome, reason, error = "error", f"because {failed} failed: {message}", message
            await self._emit(ErrorEvent(turn=turn, source="chaperone", message=message))
        drafts, last_draft, approved_sha = state.drafts, state.last_draft, state.approved_sha
        usage, categories = state.usage, state.categories

        revisions = max(drafts - 1, 0)
        cut = False
        if outcome == "withheld" and last_draft is not None and approved_sha == text_sha(last_draft):
            outcome, reason, answer, cut = "approved", "", last_draft, state.last_cut
            # Released text is the approved draft's own prefix (chunked_review.py): the views show the rest.
            if not last_draft.startswith(state.shown.get(drafts, "")):
                # The client's final text does not continue what its stream showed: what was shown was approved
                # as a prefix of a text that is not this answer. Taken back, and the answer shown whole.
                await self._withdraw(turn, state, "the answer does not continue the text shown", drafts)
            shown = len(state.shown.get(drafts, ""))
            await self._emit(Delivered(turn=turn, content=last_draft, revisions=revisions, cut=cut, released=shown))
            self.memory.add(text, last_draft)
        else:
            # Shown text of a draft the turn ended on (cancelled or failed mid-draft, too): it is not the answer.
            await self._withdraw(turn, state, f"the turn ended without an approved answer ({reason})")
            if (
                outcome == "withheld"
                and state.withdrawn
                and self.stop_on_withdraw
                and state.verdicts < self.max_revisions + 1
            ):
                reason = "text already shown was withdrawn"
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
    shown: dict[int, str] = field(default_factory=dict)  # chunked review: text shown of each round's draft
    withdrawn: bool = False  # chunked review: shown text was withdrawn in this turn
    usage: dict[str, Usage] = field(default_factory=dict)
    categories: list[str] = field(default_factory=list)


def _usage(msg: BaseChatMessage, totals: dict[str, Usage]) -> Usage:
    u = Usage.of(msg.models_usage)
    add_usage(totals, msg.source, u)
    return u
