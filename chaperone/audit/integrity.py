"""One answer to "can this transcript be trusted?", for every view (`review list/show/stats/verify/export/html`).

A transcript's status comes from three sources together: its own hash chain, its folder's run manifests
(`manifests/*.jsonl`, one line per closed conversation), and the other transcripts of its folder. Checking a
single file reads its folder's manifests and the other files' headers, so a file gets the same word whether
it is checked alone or with its folder.

Statuses, strongest first (a file gets the first that applies):

- unreadable  not a Chaperone transcript (no header record first, empty, cannot be read)
- tampered    the chain is broken; or the file disagrees with its run-manifest entry (cut at a record
              boundary, records changed, another conversation id or outcome, records after the listed last one); or,
              with a public key given, its entry is signed by another key or its signature fails
- duplicate   another file of the folder holds the same conversation id. The file a run manifest lists by
              its own name is the original and keeps its own status; every other copy is a duplicate. When
              no copy (or more than one) is listed, nothing in the folder says which is the original, and
              every copy is a duplicate.
- unsigned    (only with a public key given) its run-manifest entry agrees but carries no signature
- unlisted    closed (it has its closing record), but no run manifest lists it: the manifest was deleted,
              never written, or the line lost (a crash between closing the transcript and the manifest append)
- incomplete  no closing record and no manifest entry: an unfinished conversation (still running, crashed)
- intact      closed, chain intact, and its run-manifest entry agrees

Folder-level findings: `deleted` (a manifest lists a transcript the folder no longer holds) and damaged
run manifests (a line that is not an entry; a line whose `prev` does not match the line before it).

Exit codes of `review verify`: intact → 0; incomplete → 0 (1 with --strict); anything else → 1.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from chaperone.audit import manifest, signing
from chaperone.audit.transcript import Verification, verify

INTACT, INCOMPLETE, TAMPERED, UNSIGNED, UNLISTED, DUPLICATE, UNREADABLE = (
    "intact",
    "incomplete",
    "tampered",
    "unsigned",
    "unlisted",
    "duplicate",
    "unreadable",
)
STATUSES = (INTACT, INCOMPLETE, TAMPERED, UNSIGNED, UNLISTED, DUPLICATE, UNREADABLE)
Keys = dict[str, Ed25519PublicKey]  # key id → public key (chaperone/audit/signing.py)
PASSING = (INTACT, INCOMPLETE)  # incomplete fails only with --strict


@dataclass
class Integrity:
    """The one status of one transcript file, and why."""

    path: Path
    status: str
    chain: Verification
    problem: str = ""  # why the status is not intact, one line
    conversation_id: str | None = None
    listed_in: str | None = None  # the run manifest naming it
    copies: list[Path] = field(default_factory=list)  # other files holding the same conversation id
    signed_by: str | None = None  # the key id whose signature on its manifest entry was checked

    @property
    def records(self) -> int:
        return self.chain.records

    @property
    def first_bad(self) -> int | None:
        return self.chain.first_bad if self.status == TAMPERED and not self.chain.intact else None

    def fails(self, strict: bool = False) -> bool:
        return self.status not in PASSING or (strict and self.status == INCOMPLETE)

    def detail(self) -> str:
        """What the status word does not say: counts, the line, the reason."""
        n = f"{self.records} records"
        if self.status == INTACT:
            signed = f" · signed by key {self.signed_by}" if self.signed_by else ""
            return f"hash chain and run manifest agree{signed} · {n}"
        if self.status == INCOMPLETE:
            why = f", {self.problem}" if self.problem else ""
            return f"hash chain intact · {n}, no closing record{why}"
        if self.first_bad is not None:
            return f"line {self.first_bad}: {self.problem}"
        return self.problem

    def text(self) -> str:
        """The words every view shows (list, show, export, the HTML badge, verify)."""
        if self.fails():
            return f"{self.status.upper()}: {self.detail()}"
        return f"{self.status} · {self.detail()}"

    def as_dict(self) -> dict[str, Any]:
        v = self.chain
        return {
            "status": self.status,
            "text": self.text(),
            "problem": self.problem,
            "records": v.records,
            "first_bad_line": self.first_bad,
            "chain_intact": v.intact,
            "complete": v.complete,
            "chain_problem": v.problem,
            "listed_in": self.listed_in,
            "signed_by": self.signed_by,
            "copies": [str(p) for p in self.copies],
        }


@dataclass
class FolderProblem:
    """Something wrong that belongs to no remaining file: a transcript deleted, a run manifest unreadable."""

    path: Path
    kind: str  # "deleted" or "manifest"
    problem: str

    def as_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "kind": self.kind, "problem": self.problem}

    def text(self) -> str:
        return f"{self.kind.upper()} {self.path}: {self.problem}"


@dataclass
class Listing:
    """What a folder's run manifests say: transcript name → [(manifest name, entry)], and unreadable manifests."""

    entries: dict[str, list[tuple[str, dict[str, Any]]]]
    problems: list[FolderProblem]


def _listing(folder: Path) -> Listing:
    entries: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    problems: list[FolderProblem] = []
    for path in manifest.manifest_files(folder):
        try:
            reading = manifest.read(path)
        except OSError as exc:
            problems.append(FolderProblem(path, "manifest", f"run manifest cannot be read: {exc.strerror}"))
            continue
        problems += [FolderProblem(path, "manifest", problem) for problem in reading.problems]
        for line in reading.lines:
            entries.setdefault(line.entry["transcript"], []).append((path.name, line.entry))
    return Listing(entries, problems)


def _header(path: Path) -> dict[str, Any] | None:
    """The file's first record when it is a transcript header, else None."""
    try:
        with path.open("rb") as fh:
            first = fh.readline()  # a served request's header holds what its client sent: no size cap
        record = json.loads(first.decode("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) and record.get("type") == "header" else None


def _against_entry(v: Verification, path: Path, header: dict[str, Any], manifest_name: str, want: dict) -> str:
    """Why the file disagrees with its manifest entry ('' when it agrees)."""
    records = want.get("records")
    if not isinstance(records, int) or records < 1:
        return f"run manifest {manifest_name} has no record count for it"
    if v.records < records:
        return f"cut short: {v.records} records, run manifest {manifest_name} says {records}"
    last = None
    for number, record in enumerate(_records(path), start=1):
        if number == records:
            last = record
            break
    if last is None or last.get("hash") != want.get("last_hash"):
        return f"record {records} differs from the last hash in run manifest {manifest_name}"
    if v.records > records:
        return f"{v.records} records, run manifest {manifest_name} says {records} (records added)"
    if want.get("conversation_id") not in (None, header.get("conversation_id")):
        return f"conversation id differs from run manifest {manifest_name}"
    if "outcome" in want and last.get("type") == "closing" and last.get("outcome") != want["outcome"]:
        return f"outcome {last.get('outcome')!r} differs from run manifest {manifest_name} ({want['outcome']!r})"
    if not v.complete:
        return f"run manifest {manifest_name} lists it closed, but it has no closing record"
    return ""


def _records(path: Path) -> Iterable[dict[str, Any]]:
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                yield json.loads(line)
            except ValueError:
                yield {}


def _status(path: Path, header: dict[str, Any] | None, listing: Listing, keys: Keys | None) -> Integrity:
    v = verify(path)
    if header is None:
        why = "empty file" if v.problem == "empty transcript" else "not a Chaperone transcript (no header record first)"
        if v.problem.startswith("cannot read"):
            why = v.problem
        return Integrity(path, UNREADABLE, v, why)
    cid = header.get("conversation_id")
    if not v.intact:
        return Integrity(path, TAMPERED, v, v.problem, cid)
    listed = listing.entries.get(path.name, [])
    if len(listed) > 1:
        names = ", ".join(m for m, _ in listed)
        return Integrity(path, TAMPERED, v, f"listed more than once (run manifests {names})", cid)
    if listed:
        manifest_name, want = listed[0]
        problem = _against_entry(v, path, header, manifest_name, want)
        if problem:
            return Integrity(path, TAMPERED, v, problem, cid, manifest_name)
        if keys is not None:
            status, why = signing.check(want, keys)
            if status:
                return Integrity(path, status, v, why, cid, manifest_name)
            return Integrity(path, INTACT, v, "", cid, manifest_name, signed_by=str(want.get("key_id")))
        return Integrity(path, INTACT, v, "", cid, manifest_name)
    if not v.complete:
        return Integrity(path, INCOMPLETE, v, v.problem, cid)
    run = str(header.get("run_id") or "")
    own = manifest.manifest_path(path.parent, run) if run else None
    if own is not None and own.exists():
        why = f"closed, but its run manifest {own.name} does not list it"
    elif own is not None:
        why = f"closed, but its run manifest {own.name} is missing"
    else:
        why = "closed, but no run manifest lists it"
    return Integrity(path, UNLISTED, v, why, cid)


def _mark_duplicates(results: list[Integrity], headers: dict[Path, dict[str, Any] | None], listing: Listing) -> None:
    """Files holding the same conversation id as another file of their folder (see the module docstring)."""
    by_id: dict[str, list[Path]] = {}
    for path, header in headers.items():
        if header and header.get("conversation_id"):
            by_id.setdefault(str(header["conversation_id"]), []).append(path)
    for r in results:
        group = by_id.get(str(r.conversation_id), []) if r.conversation_id else []
        if len(group) < 2:
            continue
        r.copies = [p for p in group if p != r.path]
        listed = [p for p in group if p.name in listing.entries]
        original = listed[0] if len(listed) == 1 else None
        if r.path == original or r.status in (TAMPERED, UNREADABLE):
            continue
        names = ", ".join(p.name for p in r.copies)
        r.status = DUPLICATE
        r.problem = (
            f"a copy of {original.name} (same conversation id)"
            if original
            else f"same conversation id as {names}; no run manifest tells which is the original"
        )


def check_files(paths: Iterable[Path], keys: Keys | None = None) -> list[Integrity]:
    """The status of each file, each judged against its own folder (manifests and other transcripts), and
    with keys (key id → Ed25519 public key) against the signatures of its manifest entry."""
    paths = [Path(p) for p in paths]
    by_folder: dict[Path, list[Path]] = {}
    for p in paths:
        by_folder.setdefault(p.parent, []).append(p)
    found: dict[Path, Integrity] = {}
    for folder, files in by_folder.items():
        listing = _listing(folder)
        neighbours = sorted({*files, *(f for f in folder.glob("*.jsonl") if f.is_file())})
        headers = {f: _header(f) for f in neighbours}
        results = [_status(f, headers[f], listing, keys) for f in files]
        _mark_duplicates(results, headers, listing)
        found.update((r.path, r) for r in results)
    return [found[p] for p in paths]


def check_file(path: Path, keys: Keys | None = None) -> Integrity:
    return check_files([path], keys)[0]


def folder_problems(folder: Path) -> list[FolderProblem]:
    """Damaged run manifests, and transcripts a manifest lists that the folder no longer holds."""
    listing = _listing(Path(folder))
    problems = list(listing.problems)
    for name, listed in sorted(listing.entries.items()):
        if not (Path(folder) / name).exists():
            for manifest_name, want in listed:
                problems.append(
                    FolderProblem(
                        Path(folder) / name,
                        "deleted",
                        f"run manifest {manifest_name} lists it with {want.get('records')} records",
                    )
                )
    return problems
