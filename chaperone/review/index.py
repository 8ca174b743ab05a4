"""The transcripts folder as a list of conversations: one summary per file (from its story and its hash
chain), filters, and finding a conversation by a prefix of its id."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any

from chaperone.audit.integrity import TAMPERED, Integrity, Keys, check_files
from chaperone.audit.transcript import Verification
from chaperone.engine.events import CONVERSATION_OUTCOMES, INCOMPLETE
from chaperone.errors import ChaperoneError
from chaperone.review.story import Story, parse_time
from chaperone.review.story_reader import build_story, load_records

# What `closing.outcome` holds (the engine's vocabulary), plus "incomplete" for a transcript without one.
OUTCOMES = (*CONVERSATION_OUTCOMES, INCOMPLETE)


class ReviewError(ChaperoneError):
    """Bad review input: an unknown or ambiguous id, a bad date, a missing folder."""


@dataclass
class Summary:
    path: Path
    integrity: Integrity  # the one status every view shows (chaperone/audit/integrity.py)
    story: Story | None = None  # None: not a transcript at all (see problem)
    problem: str = ""

    @property
    def verification(self) -> Verification:
        """The file's own hash chain (one input of its status)."""
        return self.integrity.chain

    @property
    def readable(self) -> bool:
        return self.story is not None

    @property
    def status(self) -> str:
        return self.integrity.status

    @property
    def tampered(self) -> bool:
        return self.readable and self.status == TAMPERED

    @property
    def trusted(self) -> bool:
        """Whether the file can vouch for its own outcome: intact, or an unfinished conversation."""
        return not self.integrity.fails()

    @property
    def chain(self) -> str:
        return self.status

    @property
    def started(self) -> datetime | None:
        return parse_time(self.story.started_at) if self.story else None

    def row(self) -> dict[str, Any]:
        """The summary as plain data (list --json)."""
        s = self.story
        assert s is not None
        turns = s.turns
        return {
            "id": s.conversation_id,
            "path": str(self.path),
            "started_at": s.started_at,
            "ended_at": s.ended_at,
            "kind": s.kind,
            "label": s.label,
            "scenario": s.scenario,
            "policy": s.policy,
            "policies": s.policies,
            "models": {role: a.model for role, a in s.agents.items() if a.model},
            "turns": len(turns),
            "revisions": sum(t.revisions for t in turns),
            "withheld": sum(t.outcome == "withheld" for t in turns),
            "categories": sorted({c for t in turns for c in t.raised}),
            "flagged_turns": s.flagged_turns,
            "outcome": s.outcome,
            "status": self.status,
            "integrity": self.integrity.as_dict(),
        }


def _summary(integrity: Integrity) -> Summary:
    path = integrity.path
    try:
        records = load_records(path)
    except OSError as exc:
        return Summary(path, integrity, None, f"cannot read: {exc.strerror}")
    if not records or records[0].get("type") != "header":
        why = "empty file" if not path.stat().st_size else "not a Chaperone transcript (no header record first)"
        return Summary(path, integrity, None, why)
    return Summary(path, integrity, build_story(records, path))


def summarize_all(paths: Iterable[Path], keys: Keys | None = None) -> list[Summary]:
    """Each file with its story and its status (judged against its folder: manifests, other transcripts;
    with keys, the signatures of its manifest entry)."""
    return [_summary(i) for i in check_files(paths, keys)]


def summarize(path: Path, keys: Keys | None = None) -> Summary:
    return summarize_all([Path(path)], keys)[0]


def transcript_files(paths: Iterable[Path]) -> list[Path]:
    """*.jsonl files from files and folders (a folder's own files, sorted)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found.extend(sorted(f for f in p.glob("*.jsonl") if f.is_file()))
        elif p.is_file():
            found.append(p)
        else:
            raise ReviewError(f"{p}: no such file or folder")
    return found


def scan(paths: Iterable[Path], keys: Keys | None = None) -> list[Summary]:
    """Every transcript, newest first; files that are not transcripts last."""
    summaries = summarize_all(transcript_files(paths), keys)
    readable = sorted((s for s in summaries if s.readable), key=lambda s: s.story.started_at, reverse=True)
    return readable + [s for s in summaries if not s.readable]


def parse_when(value: str, option: str, *, end_of_day: bool = False) -> datetime:
    """YYYY-MM-DD (local midnight; with end_of_day the next midnight) or an ISO timestamp (local if naive)."""
    text = value.strip()
    try:
        if len(text) == 10:
            day = datetime.strptime(text, "%Y-%m-%d")
            moment = datetime.combine(day.date(), time()) + (timedelta(days=1) if end_of_day else timedelta())
        else:
            moment = datetime.fromisoformat(text)
    except ValueError:
        raise ReviewError(
            f"{option}: '{value}' is not a date (use YYYY-MM-DD or an ISO timestamp such as 2026-11-26T14:30)"
        ) from None
    return moment if moment.tzinfo else moment.astimezone()


@dataclass
class Filters:
    since: datetime | None = None
    until: datetime | None = None
    scenario: str | None = None
    policy: str | None = None
    model: str | None = None
    outcome: str | None = None
    category: str | None = None
    kind: str | None = None
    flagged: bool = False  # only conversations with a turn flagged for a human
    limit: int | None = None

    def matches(self, s: Summary) -> bool:
        story = s.story
        if story is None:
            return False
        started = s.started
        if self.since and (started is None or started < self.since):
            return False
        if self.until and (started is None or started >= self.until):
            return False
        if self.scenario:
            needle = self.scenario.lower()
            sc = story.scenario or {}
            if needle not in sc.get("name", "").lower() and needle not in sc.get("file", "").lower():
                return False
        if self.policy and self.policy not in story.policies:
            return False
        if self.model and self.model not in story.models:
            return False
        if self.outcome and story.outcome != self.outcome:
            return False
        if self.category and not any(self.category in t.raised for t in story.turns):
            return False
        if self.flagged and not story.flagged_turns:
            return False
        return not (self.kind and story.kind != self.kind)

    def apply(self, summaries: list[Summary]) -> list[Summary]:
        selected = [s for s in summaries if self.matches(s)]
        return selected[: self.limit] if self.limit is not None else selected


def make_filters(
    *,
    since: str | None = None,
    until: str | None = None,
    outcome: str | None = None,
    limit: int | None = None,
    flagged: bool = False,
    **rest: str | None,
) -> Filters:
    if outcome is not None and outcome not in OUTCOMES:
        raise ReviewError(f"--outcome: '{outcome}' is not one of {', '.join(OUTCOMES)}")
    if limit is not None and limit < 1:
        raise ReviewError("--limit: must be at least 1")
    return Filters(
        since=parse_when(since, "--since") if since else None,
        until=parse_when(until, "--until", end_of_day=True) if until else None,
        outcome=outcome,
        limit=limit,
        flagged=flagged,
        **rest,
    )


def resolve(summaries: list[Summary], ident: str, keys: Keys | None = None) -> Summary:
    """The one transcript whose conversation id starts with ident (or whose file is ident)."""
    ident = ident.strip()
    if not ident:
        raise ReviewError("give a conversation id (or a unique prefix of one)")
    as_path = Path(ident)
    if as_path.suffix == ".jsonl" and as_path.is_file():
        return summarize(as_path, keys)
    found = [s for s in summaries if s.story and s.story.conversation_id.startswith(ident.lower())]
    if not found:
        raise ReviewError(
            f"no conversation with an id starting '{ident}' ({sum(s.readable for s in summaries)} transcripts searched)"
        )
    if len(found) > 1:
        ids = ", ".join(s.story.conversation_id[: max(len(ident) + 4, 12)] for s in found[:5])
        more = f" and {len(found) - 5} more" if len(found) > 5 else ""
        raise ReviewError(f"id prefix '{ident}' is ambiguous: {len(found)} conversations match ({ids}{more})")
    return found[0]
