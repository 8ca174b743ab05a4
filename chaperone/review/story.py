"""A transcript's records read as a story: per user turn, the rounds of draft and verdict, the diff
between consecutive drafts, and what the user got.

`review show` and every export format (markdown, JSON, HTML) render this one model, so the records are
interpreted in one place. Records are untrusted (the file may be edited, or come from a newer version):
every field is read defensively and unknown record types become notes, never an error.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from chaperone.engine.events import INCOMPLETE, Usage, add_usage

CHAIN_FIELDS = ("seq", "ts", "prev", "hash", "type")


def load_records(path: Path) -> list[dict[str, Any]]:
    """Every line that parses as a JSON object, in file order. Unlike `transcript.read_records` this never
    raises on a bad line: a tampered transcript is still shown (verify reports what is wrong with it)."""
    records = []
    with Path(path).open("rb") as fh:
        for line in fh:
            try:
                record = json.loads(line.decode("utf-8"))
            except (ValueError, UnicodeDecodeError):
                continue
            if isinstance(record, dict):
                records.append(record)
    return records


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _opt_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _scores(value: Any) -> dict[str, float | None] | None:
    return {str(k): _float(v) for k, v in value.items()} if isinstance(value, dict) else None


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _raw_decision(raw: str) -> dict[str, Any]:
    """The decision part of a verdict's raw output: its first line, where it is a JSON object (a head's or the
    request head's record, or the prompted decision); {} otherwise. Untrusted, like every field."""
    try:
        first = json.loads(raw.split("\n", 1)[0])
    except (ValueError, RecursionError):  # an edited file may hold anything, nesting too deep to parse included
        return {}
    return first if isinstance(first, dict) else {}


def _band(value: Any) -> tuple[float, float] | None:
    if isinstance(value, list) and len(value) == 2:
        low, high = _float(value[0]), _float(value[1])
        if low is not None and high is not None:
            return (low, high)
    return None


def _head_fields(raw: str) -> dict[str, Any]:
    """What a head's (or the request head's) raw record says beside the scores: which rule decided and the
    policy's rules it applied. Older records and the prompted decision's hold none of it."""
    d = _raw_decision(raw)
    decided_by = _str(d.get("decided_by"))
    if decided_by == "request_head":
        return {
            "decided_by": decided_by,
            "request_harmful": _float(d.get("request_harmful")),
            "request_threshold": _float(d.get("request_threshold")),
        }
    if decided_by != "head":
        return {}
    rules = _dict(d.get("policy_head"))
    categories = {}
    for name, rule in _dict(rules.get("categories")).items():
        rule = _dict(rule)
        categories[str(name)] = HeadRule(block=rule.get("block") is not False, threshold=_float(rule.get("threshold")))
    return {
        "decided_by": decided_by,
        "rule": _str(d.get("reason")),
        "not_ok_threshold": _float(rules.get("not_ok_threshold")),
        "flag_band": _band(rules.get("flag_band")),
        "category_rules": categories,
    }


def _texts(value: Any) -> list[str]:
    return [_str(x) for x in value] if isinstance(value, list) else []


def _usage(value: Any) -> Usage:
    d = _dict(value)
    return Usage(prompt_tokens=_int(d.get("prompt_tokens")), completion_tokens=_int(d.get("completion_tokens")))


def _categories(value: Any) -> list[str]:
    return [c for c in value if isinstance(c, str)] if isinstance(value, list) else []


def parse_time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def local_time(value: Any) -> str:
    """An ISO timestamp as local time for people: 2026-11-26 07:38:25 (the text as is if it does not parse)."""
    moment = parse_time(value)
    if moment is None:
        return _str(value) or "?"
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


def draft_diff(before: str, after: str, old_label: str, new_label: str) -> list[str]:
    lines = difflib.unified_diff(
        before.splitlines(), after.splitlines(), fromfile=old_label, tofile=new_label, lineterm="", n=2
    )
    return list(lines)


def _agent(value: Any) -> AgentInfo:
    d = _dict(value)
    model = d.get("model")
    if isinstance(model, dict):
        return AgentInfo(
            name=_str(d.get("name")),
            model=_str(model.get("name")),
            model_kind=_str(model.get("kind")),
            model_id=_str(model.get("model")),
        )
    return AgentInfo(name=_str(d.get("name")), model=_str(model))


def _served(d: dict[str, Any]) -> ServedRequest:
    """Read defensively: the header is data from disk, and its strings came from a client."""
    history = []
    for item in d.get("history") if isinstance(d.get("history"), list) else []:
        item = _dict(item)
        history.append((_str(item.get("user")), _str(item.get("assistant"))))
    return ServedRequest(
        model=_str(d.get("model")),
        key=_str(d.get("key")),
        user=_str(d.get("user")),
        system=_texts(d.get("system")),
        ignored_fields=_texts(d.get("ignored_fields")),
        history=history,
    )


def _header(story: Story, rec: dict[str, Any]) -> None:
    story.conversation_id = _str(rec.get("conversation_id"))
    story.run_id = _str(rec.get("run_id"))
    story.kind = _str(rec.get("kind")) or "unknown"
    scenario = rec.get("scenario")
    if isinstance(scenario, dict):
        story.scenario = {"name": _str(scenario.get("name")), "file": _str(scenario.get("file"))}
    served = rec.get("serve")
    if isinstance(served, dict):
        story.served = _served(served)
    if story.kind == "scenario":
        story.label = (story.scenario or {}).get("name") or "scenario"
    elif story.kind == "serve" and story.served is not None:
        s = story.served
        story.label = " · ".join(part for part in ("serve", s.model, f"key {s.key}" if s.key else "") if part)
    else:
        story.label = story.kind
    story.policy = _str(rec.get("policy"))
    story.policies = [story.policy] if story.policy else []
    mr = rec.get("max_revisions")
    story.max_revisions = mr if isinstance(mr, int) else None
    story.started_at = _str(rec.get("started_at") or rec.get("ts"))
    story.agents = {role: _agent(a) for role, a in _dict(rec.get("agents")).items()}
    story.versions = {str(k): _str(v) for k, v in _dict(rec.get("versions")).items()}
    streaming = _dict(rec.get("streaming"))
    if streaming:
        sizes = f"{_int(streaming.get('min_tokens'))}-{_int(streaming.get('max_tokens'))} tokens"
        why = _str(streaming.get("why_not_chunks"))
        story.streaming = f"whole: the policy asked for chunks, but {why}" if why else f"chunks ({sizes})"


def _extra(rec: dict[str, Any]) -> str:
    body = {k: v for k, v in rec.items() if k not in CHAIN_FIELDS}
    text = json.dumps(body, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 400 else text[:399] + "…"


class _Builder:
    def __init__(self) -> None:
        self.story = Story()
        self.turns: dict[int, TurnStory] = {}
        self.pending: dict[int, list[Note]] = {}  # notes for turns that have not started (yet)
        self.policy = ""

    def turn(self, number: int) -> TurnStory:
        if number not in self.turns:
            self.turns[number] = TurnStory(number=number, policy=self.policy, notes=self.pending.pop(number, []))
        return self.turns[number]

    def round(self, turn: TurnStory, number: int) -> Round:
        for r in turn.rounds:
            if r.number == number:
                return r
        r = Round(number=number)
        turn.rounds.append(r)
        turn.rounds.sort(key=lambda x: x.number)
        return r

    def note(self, number: Any, note: Note) -> None:
        if isinstance(number, int) and number in self.turns:
            self.turns[number].notes.append(note)
        elif isinstance(number, int) and not isinstance(number, bool):
            self.pending.setdefault(number, []).append(note)
        else:
            self.story.notes.append(note)

    def add(self, rec: dict[str, Any]) -> None:
        kind, seq, n = _str(rec.get("type")), rec.get("seq"), rec.get("turn")
        seq = seq if isinstance(seq, int) else None
        if kind == "header":
            _header(self.story, rec)
            self.policy = self.story.policy
            return
        if kind == "closing":
            self.story.closed = True
            self.story.outcome = _str(rec.get("outcome")) or INCOMPLETE
            self.story.totals = _dict(rec.get("totals"))
            self.story.ended_at = _str(rec.get("ended_at") or rec.get("ts"))
            return
        if kind == "policy_changed":
            new, old = _str(rec.get("policy")), _str(rec.get("previous")) or self.policy
            self.policy = new
            if new and new not in self.story.policies:
                self.story.policies.append(new)
            self.note(
                n, Note(kind="policy_changed", text=f"policy switched from {old or '?'} to {new or '?'}", seq=seq)
            )
            return
        known = kind in (
            "user_turn",
            "draft",
            "verdict",
            "chunk_verdict",
            "released",
            "withdrawn",
            "delivered",
            "withheld",
            "error",
            "turn_finished",
        )
        if not known or not isinstance(n, int) or isinstance(n, bool):
            self.note(n, Note(kind=kind or "record", text=f"{kind or 'untyped'} record: {_extra(rec)}", seq=seq))
            return
        t = self.turn(n)
        if kind == "user_turn":
            t.user, t.user_source = _str(rec.get("content")), _str(rec.get("source"))
        elif kind == "draft":
            self.round(t, _int(rec.get("round"), len(t.rounds) + 1)).draft = DraftStep(
                source=_str(rec.get("source")),
                model=_str(rec.get("model")),
                usage=_usage(rec.get("usage")),
                seconds=_float(rec.get("latency_s")),
                content=_str(rec.get("content")),
                stopped_at_chunk=_opt_int(rec.get("stopped_at_chunk")),
                tokens_saved=_opt_int(rec.get("tokens_saved")),
            )
        elif kind == "chunk_verdict":
            readable, raw = rec.get("readable") is not False, _str(rec.get("raw"))
            self.round(t, _int(rec.get("round"), max(len(t.rounds), 1))).chunks.append(
                ChunkStep(
                    source=_str(rec.get("source")),
                    model=_str(rec.get("model")),
                    usage=_usage(rec.get("usage")),
                    seconds=_float(rec.get("latency_s")),
                    chunk=_int(rec.get("chunk"), 0),
                    end=_int(rec.get("end"), 0),
                    draft_tokens=_int(rec.get("draft_tokens"), 0),
                    readable=readable,
                    approved=readable and rec.get("decision") == "approve",
                    categories=_categories(rec.get("categories")),
                    critique=_str(rec.get("critique")),
                    raw=raw,
                    scores=_scores(rec.get("scores")),
                    flagged=rec.get("flagged") is True,
                    **_head_fields(raw),
                )
            )
        elif kind == "released":
            r = self.round(t, _int(rec.get("round"), max(len(t.rounds), 1)))
            r.released = max(r.released, _int(rec.get("end"), 0))
        elif kind == "withdrawn":
            r = self.round(t, _int(rec.get("round"), max(len(t.rounds), 1)))
            r.withdrawn, r.withdrawn_reason = _str(rec.get("content")), _str(rec.get("reason"))
        elif kind == "verdict":
            readable = rec.get("readable") is not False
            decision = _str(rec.get("decision")) or "revise"
            raw = _str(rec.get("raw"))
            self.round(t, _int(rec.get("round"), max(len(t.rounds), 1))).verdict = VerdictStep(
                source=_str(rec.get("source")),
                model=_str(rec.get("model")),
                usage=_usage(rec.get("usage")),
                seconds=_float(rec.get("latency_s")),
                decision=decision,
                readable=readable,
                approved=readable and decision == "approve",
                categories=_categories(rec.get("categories")),
                critique=_str(rec.get("critique")),
                raw=raw,
                scores=_scores(rec.get("scores")),
                flagged=rec.get("flagged") is True,
                chunk=_opt_int(rec.get("chunk")),
                **_head_fields(raw),
            )
        elif kind == "delivered":
            t.delivered = _str(rec.get("content"))
            t.delivered_cut = rec.get("cut") is True
            t.delivered_released = _int(rec.get("released"), 0)
            t.revisions = _int(rec.get("revisions"), t.revisions)
        elif kind == "withheld":
            t.withheld, t.withheld_reason = _str(rec.get("content")), _str(rec.get("reason"))
            t.revisions = _int(rec.get("revisions"), t.revisions)
        elif kind == "error":
            t.errors.append(_str(rec.get("message")))
        elif kind == "turn_finished":
            t.outcome = _str(rec.get("outcome")) or INCOMPLETE
            t.revisions = _int(rec.get("revisions"), t.revisions)
            t.categories = _categories(rec.get("categories"))
            t.usage_by_agent = {str(k): _usage(v) for k, v in _dict(rec.get("usage_by_agent")).items()}
            t.seconds = _float(rec.get("seconds"))

    def finish(self) -> Story:
        story = self.story
        story.turns = [self.turns[k] for k in sorted(self.turns)]
        for t in story.turns:
            if t.outcome == INCOMPLETE:  # no turn_finished: what the records show so far
                t.revisions = max(len(t.rounds) - 1, 0)
                t.categories = t.raised
            if not t.usage_by_agent:
                for step in (s for r in t.rounds for s in (r.draft, r.verdict, *r.chunks) if s is not None):
                    add_usage(t.usage_by_agent, step.source or "?", step.usage)
            previous = None
            for r in t.rounds:
                if r.draft is not None and previous is not None and previous.draft is not None:
                    r.diff = draft_diff(previous.draft.content, r.draft.content, previous.label, r.label)
                    r.same_as_previous = previous.draft.content == r.draft.content
                previous = r
        for notes in self.pending.values():  # e.g. a policy switch after the last turn
            story.notes.extend(notes)
        return story


def build_story(records: Iterable[dict[str, Any]], path: Path | str = "") -> Story:
    builder = _Builder()
    for rec in records:
        builder.add(rec)
    story = builder.finish()
    story.path = str(path)
    return story
