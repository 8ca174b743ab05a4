"""Reading a transcript's records into a Story (story.py).

Records are untrusted (the file may be edited, or come from a newer version): every field is read
defensively and unknown record types become notes, never an error.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from chaperone.engine.events import INCOMPLETE, Usage, add_usage
from chaperone.review.story import (
    AgentInfo,
    ChunkStep,
    DraftStep,
    HeadRule,
    Note,
    Round,
    ServedRequest,
    Story,
    TurnStory,
    VerdictStep,
)

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
