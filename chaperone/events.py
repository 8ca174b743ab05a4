"""A conversation is a stream of events. The guarded chat produces them once; the
terminal view, the transcript writer and the statistics are sinks reading the same stream."""

from __future__ import annotations

import inspect
from typing import Annotated, Awaitable, Callable, Literal, Union

from pydantic import BaseModel, Field

# "unreviewed": the bare assistant of an evaluation, delivered with no reviewer at all.
Outcome = Literal["approved", "withheld", "error", "cancelled", "unreviewed"]


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens


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


class Delivered(_Event):
    kind: Literal["delivered"] = "delivered"
    content: str
    revisions: int


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
    outcome: Outcome
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
    Union[UserTurn, Draft, VerdictEvent, Delivered, Withheld, ErrorEvent, TurnFinished],
    Field(discriminator="kind"),
]

Sink = Callable[[BaseModel], Union[None, Awaitable[None]]]
Watcher = Callable[[Activity], None]


async def emit(sinks: list[Sink], event: BaseModel) -> None:
    """Hand one event to every sink in order (a sink may be sync or async)."""
    for sink in sinks:
        result = sink(event)
        if inspect.isawaitable(result):
            await result


class TurnEnding:
    """A sink keeping how the latest turn ended: what the user got (the answer, or the fallback and why)
    and the last error — for callers that need the result of one turn, not the whole stream."""

    def __init__(self) -> None:
        self.kind: str | None = None  # "delivered" or "withheld"
        self.content = ""
        self.reason = ""
        self.error: str | None = None

    def __call__(self, event: BaseModel) -> None:
        if isinstance(event, (Delivered, Withheld)):
            self.kind, self.content = event.kind, event.content
            self.reason = event.reason if isinstance(event, Withheld) else ""
        elif isinstance(event, ErrorEvent):
            self.error = event.message
