"""Per-run digests: when a conversation's transcript closes, its record count and last hash go into
`manifests/RUN_ID.jsonl` beside the transcripts. A hash chain alone cannot show that a whole transcript
was deleted, or cut cleanly at a record boundary; checked against its run's manifest, both show.

The manifest is append-only (one line per closed transcript, fsynced), so closing a conversation costs
the same at the millionth request of a long-running server as at the first. Conversations closing at the
same moment (a server under load closes them from worker threads) share one write and one fsync (a group
commit): each `record` call still returns only once its own line is on disk, so what a caller is told is
durable is exactly as before; only fewer fsyncs are paid for it. Each line carries `prev`, the
sha256 of the line before it, so a line removed from the middle shows; with a signing key configured each
line is also signed (chaperone/audit/signing.py). Manifests written as one JSON object (`RUN_ID.json`,
before this form) and lines without `prev` (before it) are still read.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chaperone.audit.private_files import private_dir, private_opener

if TYPE_CHECKING:
    from chaperone.audit.signing import Signer

FOLDER = "manifests"


def manifest_path(transcripts_dir: Path, run_id: str) -> Path:
    safe = "".join(c for c in run_id if c.isalnum() or c in "-_") or "run"
    return Path(transcripts_dir) / FOLDER / f"{safe}.jsonl"


GENESIS = "0" * 64  # the prev of a manifest's first line


def line_hash(raw: bytes) -> str:
    """What the next line's `prev` holds: the sha256 of this line's bytes (without its newline)."""
    return hashlib.sha256(raw).hexdigest()


def _last_line_hash(fh: Any) -> str:
    """The hash of the manifest's last line, reading only its tail (closing costs the same at any size).
    A last line cut off by a crash mid-append is ended with a newline first, so it stays one bad line."""
    size = fh.seek(0, os.SEEK_END)
    if size == 0:
        return GENESIS
    start = max(0, size - 65536)
    fh.seek(start)
    tail = fh.read()
    if not tail.endswith(b"\n"):
        fh.write(b"\n")
        tail += b"\n"
    lines = tail[:-1].split(b"\n")
    if len(lines) == 1 and start > 0:  # one line longer than the tail read: read the whole file
        fh.seek(0)
        lines = fh.read()[:-1].split(b"\n")
    return line_hash(lines[-1])


def record(
    transcripts_dir: Path,
    run_id: str,
    transcript: Path,
    records: int,
    last_hash: str,
    outcome: str,
    conversation_id: str | None = None,
    signer: Signer | None = None,
) -> dict[str, Any]:
    """Add one closed transcript to its run's manifest (several processes of one run may share it): its
    digest, chained to the line before by `prev`, signed when the deployment has a signing key. Returns
    once the line is written and fsynced (with the lines of other threads closing at the same moment)."""
    path = manifest_path(transcripts_dir, run_id)
    private_dir(path.parent)
    entry: dict[str, Any] = {
        "transcript": Path(transcript).name,
        "records": records,
        "last_hash": last_hash,
        "outcome": outcome,
    }
    if conversation_id is not None:
        entry["conversation_id"] = conversation_id
    return _committer(path).commit(_Pending(entry, signer))


@dataclass
class _Pending:
    """One line waiting for the group commit: the caller's entry, then what was written (or why not)."""

    entry: dict[str, Any]
    signer: Signer | None
    done: bool = False
    written: dict[str, Any] = field(default_factory=dict)
    error: BaseException | None = None


class _GroupCommit:
    """The lines of one manifest file, written by whichever caller arrives while no write is running: it
    takes every line waiting at that moment, writes them in one locked append and one fsync, and wakes
    their callers. A caller returns (or raises the write's error) only when its own line was written."""

    def __init__(self, path: Path):
        self.path = path
        self._cond = threading.Condition()
        self._waiting: list[_Pending] = []
        self._writing = False

    def commit(self, pending: _Pending) -> dict[str, Any]:
        with self._cond:
            self._waiting.append(pending)
            while not pending.done:
                if self._writing:
                    self._cond.wait()
                    continue
                batch, self._waiting, self._writing = self._waiting, [], True
                self._cond.release()
                try:
                    self._write(batch)
                finally:
                    self._cond.acquire()
                    self._writing = False
                    for p in batch:
                        p.done = True
                    self._cond.notify_all()
        if pending.error is not None:
            raise pending.error
        return pending.written

    def _write(self, batch: list[_Pending]) -> None:
        try:
            with open(self.path, "a+b", opener=private_opener) as fh:
                fcntl.flock(fh, fcntl.LOCK_EX)  # whole lines, and the right prev, even from several processes
                prev = _last_line_hash(fh)
                lines = []
                for p in batch:
                    entry = {**p.entry, "prev": prev}
                    if p.signer is not None:
                        entry = p.signer.sign(entry)
                    raw = json.dumps(entry, sort_keys=True, ensure_ascii=False).encode("utf-8")
                    lines.append(raw + b"\n")
                    p.written, prev = entry, line_hash(raw)
                fh.write(b"".join(lines))
                fh.flush()
                os.fsync(fh.fileno())
        except BaseException as exc:  # every caller of the batch gets the failure: none of its lines is durable
            for p in batch:
                p.error = exc
            raise


_committers: weakref.WeakValueDictionary[Path, _GroupCommit] = weakref.WeakValueDictionary()
_committers_lock = threading.Lock()


def _committer(path: Path) -> _GroupCommit:
    with _committers_lock:
        found = _committers.get(path)
        if found is None:
            found = _committers[path] = _GroupCommit(path)
        return found


@dataclass
class Line:
    number: int
    entry: dict[str, Any]  # with its "transcript" name


@dataclass
class Reading:
    """A run manifest as read: its entries, and what is wrong with it (lines that are not entries, breaks
    in the chain of prev hashes: a line removed, inserted or changed before the one named)."""

    lines: list[Line]
    problems: list[str]


def read(manifest: Path) -> Reading:
    """Every entry of a run manifest. A last line cut off by a crash mid-append is skipped; damage elsewhere
    is reported and the other lines are still read."""
    data = Path(manifest).read_bytes()
    if Path(manifest).suffix == ".json":  # the earlier whole-object form: no chain, no signatures
        try:
            listed = json.loads(data.decode("utf-8"))["transcripts"]
            return Reading([Line(0, {**entry, "transcript": name}) for name, entry in listed.items()], [])
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
            return Reading([], ["not a run manifest (whole-object form)"])
    # The last part is empty after the final newline, or a line cut off by a crash mid-append: either way
    # not an entry, and the entries before it stand.
    parts = data.split(b"\n")[:-1]
    lines: list[Line] = []
    problems: list[str] = []
    prev = GENESIS
    for number, raw in enumerate(parts, start=1):
        try:
            entry = json.loads(raw.decode("utf-8"))
            if not isinstance(entry, dict) or not isinstance(entry.get("transcript"), str):
                raise ValueError
        except (ValueError, UnicodeDecodeError):
            problems.append(f"line {number} is not a manifest entry")
            prev = line_hash(raw)
            continue
        if "prev" in entry and entry["prev"] != prev:
            problems.append(
                f"line {number}: prev does not match the line before it (a line removed, inserted or changed)"
            )
        lines.append(Line(number, entry))
        prev = line_hash(raw)
    return Reading(lines, problems)


def entries(manifest: Path) -> dict[str, dict[str, Any]]:
    """Transcript name → its entry. Raises ValueError when a line (not the torn last one) is unreadable."""
    reading = read(manifest)
    if reading.problems and "not a manifest entry" in reading.problems[0]:
        raise ValueError(reading.problems[0])
    return {line.entry["transcript"]: line.entry for line in reading.lines}


def manifest_files(folder: Path) -> list[Path]:
    """Every run manifest of a transcripts folder (the line form and the earlier whole-object form)."""
    where = Path(folder) / FOLDER
    return sorted(where.glob("*.json")) + sorted(where.glob("*.jsonl"))
