"""A conversation is a stream of events. The guarded chat produces them once; the
terminal view, the transcript writer and the statistics are sinks reading the same stream."""

from __future__ import annotations

import inspect
import math
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, Field, model_serializer

# The one outcome vocabulary. Every event, transcript, review filter, page, header and report uses these.
# How one turn ended. "unreviewed": the bare assistant of an evaluation, delivered with no reviewer at all.
TurnOutcome = Literal["approved", "withheld", "error", "cancelled", "unreviewed"]
# How a whole conversation ended (its closing record). "interrupted": it stopped inside a turn.
ConversationOutcome = Literal["approved", "withheld", "error", "interrupted", "unreviewed"]
# What a reader may find besides: a transcript with no closing record (still running, or cut off).
INCOMPLETE = "incomplete"
TURN_OUTCOMES: tuple[str, ...] = get_args(TurnOutcome)
CONVERSATION_OUTCOMES: tuple[str, ...] = get_args(ConversationOutcome)


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
        )

    @classmethod
    def of(cls, usage: Any) -> Usage:
        """From any object with prompt_tokens/completion_tokens (AutoGen's RequestUsage), or None: zero."""
        if usage is None:
            return cls()
        return cls(prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens)


def total_usage(usages: Iterable[Usage]) -> Usage:
    return sum(usages, Usage())


def add_usage(totals: dict[str, Usage], key: str, usage: Usage) -> None:
    """Add to a running per-key total (per agent, per role)."""
    totals[key] = totals.get(key, Usage()) + usage


class _Event(BaseModel):
    turn: int  # 1-based index of the user turn this event belongs to


class UserTurn(_Event):
    kind: Literal["user_turn"] = "user_turn"
    source: str
    content: str


class Draft(_Event):
    kind: Literal["draft"] = "draft"
    source: str
    round: int  # 1 for the first draft, 2 for the first revision, ...
    content: str
    model: str
    usage: Usage
    latency_s: float
    cut: bool = False  # the model stopped at the token limit (max_tokens): the text ends mid-answer
    # Chunked review (policy `streaming: chunks`): the generation was stopped because the reviewer sent back
    # this chunk's prefix; `tokens_saved` is what was left of the draft's max_tokens (the most it could have
    # cost more). Absent from whole-draft records, so those read as they always have.
    stopped_at_chunk: int | None = None
    tokens_saved: int | None = None

    @model_serializer(mode="wrap")
    def _omit_chunk_fields_when_unused(self, handler: Any) -> dict[str, Any]:
        return _without_none(handler(self), "stopped_at_chunk", "tokens_saved")


def recorded_scores(scores: dict[str, float] | None) -> dict[str, float | None] | None:
    """A head's scores as the transcript records them (JSON has no NaN: an unreadable one is null)."""
    if scores is None:
        return None
    return {k: round(v, 4) if math.isfinite(v) else None for k, v in scores.items()}


def _without_none(data: dict[str, Any], *keys: str) -> dict[str, Any]:
    for key in keys:
        if data.get(key) is None:
            data.pop(key, None)
    return data


def _without_unused_head_fields(data: dict[str, Any], *keys: str) -> dict[str, Any]:
    """A verdict's record (whole or chunk) without the head's fields when the prompted decision decided, so
    those records read as they always have: no `scores` (nor the other `keys`) when None, no `flagged` when
    False."""
    data = _without_none(data, "scores", *keys)
    if not data.get("flagged"):
        data.pop("flagged", None)
    return data


class VerdictEvent(_Event):
    kind: Literal["verdict"] = "verdict"
    source: str
    round: int
    decision: Literal["approve", "revise"]
    categories: list[str]
    critique: str
    readable: bool
    raw: str  # the reviewer's output as it came, for the audit
    model: str
    usage: Usage
    latency_s: float
    # When a judgement head decided (engine/head_decision.py): its probabilities, "not_ok" and per category.
    # Absent from the record when the prompted decision did, so those records read as they always have.
    scores: dict[str, float | None] | None = None  # null: a score that was not a number
    flagged: bool = False  # the head's overall score fell in the policy's flag band: for a human to look at
    # Chunked review: the round's verdict is this chunk's (the draft was stopped there; no second model call).
    chunk: int | None = None

    @model_serializer(mode="wrap")
    def _omit_head_fields_when_unused(self, handler: Any) -> dict[str, Any]:
        return _without_unused_head_fields(handler(self), "chunk")


class ChunkVerdict(_Event):
    """Chunked review: the reviewer's verdict on the draft written so far (a prefix), while it is written."""

    kind: Literal["chunk_verdict"] = "chunk_verdict"
    source: str
    round: int  # the draft being written: 1 for the first draft
    chunk: int  # 1 for the draft's first chunk
    end: int  # the prefix judged is the draft's first `end` characters
    prefix_sha256: str  # binds the verdict to exactly that text
    draft_tokens: int  # tokens the assistant had written when the prefix was cut
    decision: Literal["approve", "revise"]
    categories: list[str]
    critique: str
    readable: bool
    raw: str
    model: str
    usage: Usage
    latency_s: float
    # As on a verdict: the head's probabilities and the flag band, where a head decided (absent otherwise).
    scores: dict[str, float | None] | None = None
    flagged: bool = False

    @model_serializer(mode="wrap")
    def _omit_head_fields_when_unused(self, handler: Any) -> dict[str, Any]:
        return _without_unused_head_fields(handler(self))


class Released(_Event):
    """Chunked review: an approved prefix's new text, shown to the user before the draft is finished."""

    kind: Literal["released"] = "released"
    round: int
    chunk: int
    start: int  # the draft's characters [start, end): what was not released before
    end: int
    content: str


class Withdrawn(_Event):
    """Chunked review: text released in this round is taken back (a later chunk, or the whole draft, was
    sent back, or the turn failed). A terminal marks it withdrawn; a stream cannot, and ends with the fallback."""

    kind: Literal["withdrawn"] = "withdrawn"
    round: int
    content: str  # everything released in the round
    reason: str


class Delivered(_Event):
    kind: Literal["delivered"] = "delivered"
    content: str
    revisions: int
    cut: bool = False  # the approved draft stopped at the assistant's token limit: it ends mid-answer
    released: int = 0  # chunked review: the first `released` characters were already shown (Released events)

    @model_serializer(mode="wrap")
    def _omit_released_when_unused(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        if not data.get("released"):
            data.pop("released", None)
        return data


class Withheld(_Event):
    kind: Literal["withheld"] = "withheld"
    content: str  # the fallback the user got instead
    revisions: int
    reason: str


class ErrorEvent(_Event):
    kind: Literal["error"] = "error"
    source: str
    message: str


class TurnFinished(_Event):
    kind: Literal["turn_finished"] = "turn_finished"
    outcome: TurnOutcome
    revisions: int
    categories: list[str]
    usage_by_agent: dict[str, Usage]
    seconds: float


class Activity(BaseModel):
    """Live progress inside a turn, for interactive views. Not an audit record: never written to transcripts."""

    turn: int
    stage: Literal["drafting", "reviewing", "critiquing"]
    round: int  # the draft being written or judged: 1 for the first draft
    tokens: int = 0  # draft tokens streamed so far (streaming backends)
    piece: str = ""  # the newest piece of draft text (unreviewed: only for views that show the debate)


Event = Annotated[
    UserTurn
    | Draft
    | VerdictEvent
    | ChunkVerdict
    | Released
    | Withdrawn
    | Delivered
    | Withheld
    | ErrorEvent
    | TurnFinished,
    Field(discriminator="kind"),
]

Sink = Callable[[BaseModel], Awaitable[None] | None]
Watcher = Callable[[Activity], None]


async def emit(sinks: list[Sink], event: BaseModel) -> None:
    """Hand one event to every sink in order (a sink may be sync or async)."""
    for sink in sinks:
        result = sink(event)
        if inspect.isawaitable(result):
            await result


class TurnResult(BaseModel):
    """What a chat's send() returns: how the turn ended and what the user got. Not an event: the stream
    already holds the same facts (Delivered/Withheld, ErrorEvent, TurnFinished) for the sinks."""

    turn: int
    outcome: TurnOutcome
    text: str  # what the user got: the answer, or the policy's fallback
    delivered: bool  # True: `text` is the assistant's answer (approved or unreviewed); False: the fallback
    cut: bool = False  # the delivered answer stopped at the assistant's token limit (finish_reason "length")
    reason: str = ""  # why it was withheld: "revisions exhausted", "because the review failed: ..."
    error: str | None = None  # the turn's error message, if it had one
    revisions: int
    categories: list[str]
    usage_by_agent: dict[str, Usage]
    seconds: float

    @property
    def usage(self) -> Usage:
        return total_usage(self.usage_by_agent.values())

    @classmethod
    def of(
        cls,
        finished: TurnFinished,
        *,
        text: str,
        delivered: bool,
        reason: str = "",
        error: str | None = None,
        cut: bool = False,
    ) -> TurnResult:
        """The result of the turn that event closed: its facts, plus what the user got."""
        facts = finished.model_dump(include={"turn", "outcome", "revisions", "categories", "seconds"})
        usage = dict(finished.usage_by_agent)
        return cls(**facts, usage_by_agent=usage, text=text, delivered=delivered, reason=reason, error=error, cut=cut)


ActivityHook = Callable[[str, int, int, str], None]  # (stage, round, tokens so far, newest piece)


@dataclass
class Totals:
    """Running totals of a conversation, itself a sink."""

    turns: int = 0
    revisions: int = 0
    approved: int = 0
    withheld: int = 0
    errors: int = 0
    cancelled: int = 0
    unreviewed: int = 0
    seconds: float = 0.0
    usage_by_agent: dict[str, Usage] = field(default_factory=dict)
    last_outcome: TurnOutcome | None = None
    chunk_verdicts: int = 0  # chunked review: verdicts on drafts being written
    tokens_saved: int = 0  # chunked review: draft budgets left unused by generations stopped early

    def __call__(self, event: Any) -> None:
        if isinstance(event, (Draft, VerdictEvent, ChunkVerdict)):
            add_usage(self.usage_by_agent, event.source, event.usage)
            self.chunk_verdicts += isinstance(event, ChunkVerdict)
            self.tokens_saved += (event.tokens_saved or 0) if isinstance(event, Draft) else 0
        elif isinstance(event, TurnFinished):
            self.turns += 1
            self.revisions += event.revisions
            self.seconds += event.seconds
            self.last_outcome = event.outcome
            if event.outcome == "approved":
                self.approved += 1
            elif event.outcome == "withheld":
                self.withheld += 1
            elif event.outcome == "cancelled":
                self.cancelled += 1
            elif event.outcome == "unreviewed":
                self.unreviewed += 1
            else:
                self.errors += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "turns": self.turns,
            "revisions": self.revisions,
            "approved": self.approved,
            "withheld": self.withheld,
            "errors": self.errors,
            "cancelled": self.cancelled,
            **({"unreviewed": self.unreviewed} if self.unreviewed else {}),
            # Only with chunked review, so a whole-draft closing record reads as it always has.
            **({"chunk_verdicts": self.chunk_verdicts} if self.chunk_verdicts else {}),
            **({"tokens_saved": self.tokens_saved} if self.tokens_saved else {}),
            "seconds": round(self.seconds, 3),
            "usage_by_agent": {k: v.model_dump() for k, v in self.usage_by_agent.items()},
        }

    @property
    def outcome(self) -> ConversationOutcome:
        # Interrupted when it ended inside a turn; a chat turn cancelled earlier with Ctrl-C does not count.
        if self.last_outcome == "cancelled":
            return "interrupted"
        if self.errors:
            return "error"
        if self.unreviewed:
            return "unreviewed"
        return "withheld" if self.withheld else "approved"
