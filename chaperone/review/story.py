"""A transcript read as a story: per user turn, the rounds of draft and verdict (and, under chunked review,
the verdicts on the draft while it was written), the diff between consecutive drafts, and what the user got.

`review show` and every export format (markdown, JSON, HTML) render this one model, so the records are
interpreted in one place: story_reader.py builds it from a transcript's records.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from chaperone.engine.events import INCOMPLETE, Usage


def parse_time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def local_time(value: Any) -> str:
    """An ISO timestamp as local time for people: 2026-11-26 07:38:25 (the text as is if it does not parse)."""
    moment = parse_time(value)
    if moment is None:
        return (value if isinstance(value, str) else "") or "?"
    return (moment.astimezone() if moment.tzinfo else moment).strftime("%Y-%m-%d %H:%M:%S")


def score_text(score: float | None, threshold: float | None = None) -> str:
    """A score for people: two decimals (four where two would contradict the comparison), "?" where the record
    holds no number; against a threshold: "0.18 < 0.2547", "0.71 ≥ 0.364"."""
    if score is None:
        return "?" if threshold is None else f"? (threshold {threshold:g})"
    text = f"{score:.2f}"
    if threshold is None:
        return text
    reached = score >= threshold
    if (float(text) >= threshold) != reached:
        text = f"{score:.4f}"
    return f"{text} {'≥' if reached else '<'} {threshold:g}"


class HeadScore(BaseModel):
    """One of a head's scores as a verdict shows it: against its threshold where the record names one."""

    name: str
    score: float | None = None
    threshold: float | None = None
    block: bool | None = None  # the policy's rule for the category: True blocks, False allowed; None: no rule

    @property
    def text(self) -> str:
        rule = "" if self.block is None else (" (blocking)" if self.block else " (allowed here)")
        return f"{self.name} {score_text(self.score, self.threshold)}{rule}"


def scores_text(scores: dict[str, float | None]) -> str:
    """Every score of a head, overall first, then the categories from the highest ("?" where no number was read)."""
    overall = scores.get("not_ok")
    cats = sorted(((k, v) for k, v in scores.items() if k != "not_ok"), key=lambda kv: -(kv[1] or 0.0))
    return " · ".join(f"{k} {score_text(v)}" for k, v in [("not_ok", overall), *cats])


class HeadRule(BaseModel):
    """A category's rule in the policy's `head` section, as the verdict's raw record names it."""

    block: bool = True
    threshold: float | None = None


class Step(BaseModel):
    """One model call: a draft or a verdict."""

    source: str = ""
    model: str = ""
    usage: Usage = Field(default_factory=Usage)
    seconds: float | None = None


class DraftStep(Step):
    content: str = ""
    # Chunked review: the generation stopped because this chunk's prefix was sent back; what was left of the
    # draft's max_tokens then.
    stopped_at_chunk: int | None = None
    tokens_saved: int | None = None


class Judgement(Step):
    """A reviewer's verdict: on the finished draft, or (chunked review) on its first characters while written."""

    approved: bool = False  # a readable "approve": the only thing that let a draft (or a prefix) through
    readable: bool = True
    categories: list[str] = Field(default_factory=list)
    critique: str = ""
    raw: str = ""
    # When a judgement head decided: its probabilities ("not_ok", per category; None where it read no number)
    # and whether the overall score fell in the policy's flag band.
    scores: dict[str, float | None] | None = None
    flagged: bool = False
    # From the raw record's first line, where a head decided (absent from older records and the prompted one):
    decided_by: str = ""  # "head", "request_head", or "" (the prompted decision)
    rule: str = ""  # which of the head's rules decided: "blocking category", "below every threshold", ...
    not_ok_threshold: float | None = None  # the policy's `head` rules the scores were held against
    flag_band: tuple[float, float] | None = None
    category_rules: dict[str, HeadRule] = Field(default_factory=dict)
    # A draft that only declines, decided by the request head: P(request harmful) and the threshold below which
    # declining is a needless refusal.
    request_harmful: float | None = None
    request_threshold: float | None = None

    @property
    def head_overall(self) -> HeadScore | None:
        """The head's overall not-OK score against the policy's threshold (None: no head decided)."""
        if self.scores is None:
            return None
        return HeadScore(name="not_ok", score=self.scores.get("not_ok"), threshold=self.not_ok_threshold)

    @property
    def head_categories(self) -> list[HeadScore]:
        """The categories that matter, not every score: the verdict's own, and those whose score reached the
        threshold of their rule (blocking or allowed); for a flagged or sent-back verdict that names none, the
        head's highest-scoring category."""
        if self.scores is None:
            return []
        cats = {k: v for k, v in self.scores.items() if k != "not_ok"}
        names = [c for c in self.categories if c in cats]
        for c, rule in self.category_rules.items():
            score = cats.get(c)
            if rule.threshold is not None and score is not None and score >= rule.threshold and c not in names:
                names.append(c)
        if not names and (self.flagged or not self.approved) and cats:
            names.append(max(cats, key=lambda c: -1.0 if cats[c] is None else cats[c]))
        shown = []
        for c in names:
            rule = self.category_rules.get(c)
            threshold = rule.threshold if rule is not None else None
            shown.append(
                HeadScore(name=c, score=cats.get(c), threshold=threshold, block=None if rule is None else rule.block)
            )
        return shown

    @property
    def flag_band_text(self) -> str:
        return "" if self.flag_band is None else f"flag band [{self.flag_band[0]:g}, {self.flag_band[1]:g})"

    @property
    def request_score(self) -> HeadScore | None:
        """The request head's P(request harmful), where it decided this verdict."""
        if self.decided_by != "request_head":
            return None
        return HeadScore(name="P(request harmful)", score=self.request_harmful, threshold=self.request_threshold)


class ChunkStep(Judgement):
    """Chunked review: the reviewer's verdict on the draft's first `end` characters, while it was written."""

    chunk: int = 0
    end: int = 0
    draft_tokens: int = 0


class VerdictStep(Judgement):
    decision: str = "revise"
    chunk: int | None = None  # chunked review: the round's verdict is this chunk's (the draft stopped there)


def head_decision_text(v: Judgement) -> str:
    """A head's verdict in one line: the overall score against the policy's threshold, the flag band, the
    categories that matter, and the rule that decided (what the record holds of them)."""
    parts = [v.head_overall.text] if v.head_overall is not None else []
    parts += [v.flag_band_text] if v.flag_band_text else []
    parts += [h.text for h in v.head_categories]
    parts += [f"rule: {v.rule}"] if v.rule else []
    return " · ".join(parts)


CUT_NOTE = " (cut at the token limit)"  # a delivered answer that stopped at the assistant's max_tokens


class Round(BaseModel):
    number: int
    draft: DraftStep | None = None
    verdict: VerdictStep | None = None
    diff: list[str] = Field(default_factory=list)  # unified diff from the previous round's draft
    same_as_previous: bool = False  # a redraft identical to the draft that was sent back
    chunks: list[ChunkStep] = Field(default_factory=list)  # chunked review: verdicts on the draft being written
    released: int = 0  # chunked review: characters of this round's draft shown to the user as they were approved
    withdrawn: str | None = None  # chunked review: the shown text taken back, and why
    withdrawn_reason: str = ""

    @property
    def label(self) -> str:
        return "first draft" if self.number == 1 else f"revision {self.number - 1}"


class Note(BaseModel):
    """Something the story shows between turns: a policy switch, an error, a record of an unknown type."""

    kind: str
    text: str
    seq: int | None = None


class TurnStory(BaseModel):
    number: int
    user: str | None = None
    user_source: str = ""
    policy: str = ""  # the policy in force for this turn
    rounds: list[Round] = Field(default_factory=list)
    delivered: str | None = None
    delivered_cut: bool = False  # the delivered answer stopped at the assistant's token limit
    delivered_released: int = 0  # chunked review: its first characters were shown as they were approved
    withheld: str | None = None
    withheld_reason: str = ""
    errors: list[str] = Field(default_factory=list)
    outcome: str = INCOMPLETE  # a TurnOutcome from turn_finished; INCOMPLETE without one
    revisions: int = 0
    categories: list[str] = Field(default_factory=list)
    usage_by_agent: dict[str, Usage] = Field(default_factory=dict)
    seconds: float | None = None
    notes: list[Note] = Field(default_factory=list)  # shown before the turn

    @property
    def raised(self) -> list[str]:
        """Every category a verdict of this turn named, in order."""
        verdicts = (c for r in self.rounds if r.verdict for c in r.verdict.categories)
        return list(dict.fromkeys([*self.categories, *verdicts]))

    @property
    def tokens(self) -> int:
        return sum(u.total for u in self.usage_by_agent.values())

    @property
    def flagged(self) -> bool:
        """A verdict of this turn was flagged for a human (the head's score in the policy's flag band), a chunk's
        included: a prefix approved in the band was shown to the user."""
        return any(
            (r.verdict is not None and r.verdict.flagged) or any(c.flagged for c in r.chunks) for r in self.rounds
        )


class AgentInfo(BaseModel):
    name: str = ""
    model: str = ""  # the model's name in models.yaml
    model_kind: str = ""
    model_id: str = ""  # the endpoint's model id, when there is one


class ServedRequest(BaseModel):
    """What a client sent the server with its request, besides the last user turn (the header's `serve`)."""

    model: str = ""  # the served model name the client asked for
    key: str = ""  # the API key's name (never the key)
    user: str = ""  # the request's `user` field
    system: list[str] = Field(default_factory=list)  # the client's system/developer messages
    ignored_fields: list[str] = Field(default_factory=list)
    history: list[tuple[str, str]] = Field(default_factory=list)  # earlier (user, assistant) exchanges


class Story(BaseModel):
    path: str = ""
    conversation_id: str = ""
    run_id: str = ""
    kind: str = ""
    label: str = ""  # scenario name, "chat", or the kind
    scenario: dict[str, str] | None = None
    served: ServedRequest | None = None
    policy: str = ""  # the policy the conversation started with
    policies: list[str] = Field(default_factory=list)  # every policy it used, in order
    streaming: str = ""  # chunked review, from the header: "chunks (8-48 tokens)", or why it ran whole; "" when off
    max_revisions: int | None = None
    started_at: str = ""
    ended_at: str = ""
    agents: dict[str, AgentInfo] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)
    outcome: str = INCOMPLETE  # the closing record's ConversationOutcome, or INCOMPLETE without one
    closed: bool = False
    totals: dict[str, Any] = Field(default_factory=dict)
    turns: list[TurnStory] = Field(default_factory=list)
    notes: list[Note] = Field(default_factory=list)  # notes that belong to no turn (e.g. after the last one)

    @property
    def models(self) -> list[str]:
        return [a.model for a in self.agents.values() if a.model]

    @property
    def flagged_turns(self) -> list[int]:
        """The turns a verdict flagged for a human."""
        return [t.number for t in self.turns if t.flagged]
