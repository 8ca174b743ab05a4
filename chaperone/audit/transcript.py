"""Audit transcripts: append-only JSONL, one file per conversation, hash-chained.

Every record carries seq, ts, prev (the previous record's hash) and hash (sha256
of the record's canonical JSON without "hash"). Records are flushed as they are
written, so a crash leaves every finished record intact; editing, deleting,
inserting or reordering records breaks the chain and `verify` says where.

A writer may be written to from the event loop and closed from a worker thread (a server closes
conversations off the loop): appending and closing hold one lock, so a record is never half-numbered
and a transcript gets exactly one closing record, whoever closes it and however often.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loguru import logger
from pydantic import BaseModel

from chaperone.audit.private_files import private_dir, private_opener
from chaperone.audit.redaction import Redactor

GENESIS = "0" * 64
FORMAT_VERSION = 1


def canonical(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def record_hash(record: dict[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(canonical(body).encode("utf-8")).hexdigest()


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TranscriptClosedError(RuntimeError):
    """A record for a transcript that already has its closing record (nothing may follow it)."""


def _create_with_header(path: Path, header_line: str):
    """Create the transcript with its header already in it, and open it for appending.

    A process killed between creating a file and writing its first record would leave an empty transcript,
    which reads as tampered. So the header goes to a hidden temporary file first, which is then linked under
    the transcript's name (like open(..., "x"), the link never replaces an existing transcript); a kill at
    any moment leaves either no transcript or one that starts with its header. Owner-only, whatever the umask.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "x", encoding="utf-8", opener=private_opener) as fh:
        fh.write(header_line)
    try:
        os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return open(path, "a", encoding="utf-8")  # open for the whole conversation


class TranscriptWriter:
    """Writes one conversation. Use as a sink: `writer(event)` appends the event as a record."""

    def __init__(self, directory: Path, header: dict[str, Any], redactor: Redactor | None = None):
        self.redactor = redactor or Redactor()
        self.conversation_id = header.get("conversation_id") or uuid.uuid4().hex
        started = datetime.now(UTC)
        private_dir(directory)
        self.path = directory / f"{started:%Y%m%dT%H%M%SZ}-{self.conversation_id[:12]}.jsonl"
        self._seq = 0
        self._prev = GENESIS
        self._lock = threading.Lock()  # one record at a time, and nothing after the closing one
        self.closed = False
        first = self._next(
            "header",
            {**header, "conversation_id": self.conversation_id, "format": FORMAT_VERSION, "started_at": now_iso()},
        )
        self._fh = _create_with_header(self.path, canonical(first) + "\n")
        self._written(first)

    def _next(self, record_type: str, payload: dict[str, Any]) -> dict[str, Any]:
        """The next record, chained to the previous one (counted only once written: `_written`)."""
        record = {"seq": self._seq, "ts": now_iso(), "type": record_type, **self.redactor.scrub(payload)}
        record["prev"] = self._prev
        record["hash"] = record_hash(record)
        return record

    def _written(self, record: dict[str, Any]) -> dict[str, Any]:
        self._seq += 1
        self._prev = record["hash"]
        return record

    def append(self, record_type: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Write one record. Raises TranscriptClosedError after the closing record."""
        with self._lock:
            if self.closed:
                raise TranscriptClosedError(f"transcript {self.path} is closed")
            return self._write(record_type, payload)

    def _write(self, record_type: str, payload: dict[str, Any]) -> dict[str, Any]:
        record = self._next(record_type, payload)
        self._fh.write(canonical(record) + "\n")
        self._fh.flush()
        return self._written(record)

    def __call__(self, event: BaseModel) -> None:
        """The sink: an event that arrives after the conversation was closed is logged, not written (a
        record after the closing one would make the transcript look tampered) and not raised into the
        code that emitted it."""
        payload = event.model_dump(mode="json")
        kind = payload.pop("kind")
        try:
            self.append(kind, payload)
        except TranscriptClosedError:
            logger.warning("{} event after {} was closed: not recorded", kind, self.path.name)

    def close(self, outcome: str, totals: dict[str, Any]) -> bool:
        """Write the closing record and close the file, once: True for the call that closed it, False
        for any later one (which writes nothing)."""
        with self._lock:
            if self.closed:
                return False
            try:
                self._write("closing", {"outcome": outcome, "totals": totals, "ended_at": now_iso()})
            finally:
                self._fh.close()
                self.closed = True
            return True

    @property
    def last_hash(self) -> str:
        return self._prev

    @property
    def records(self) -> int:
        return self._seq


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    """Every complete record of a transcript, in order (a torn last line is skipped)."""
    with Path(path).open(encoding="utf-8") as fh:
        for line in fh:
            if not line.endswith("\n"):
                return  # torn write at the tail: not a finished record
            line = line.strip()
            if line:
                yield json.loads(line)


@dataclass
class Verification:
    path: Path
    records: int
    intact: bool
    complete: bool  # has its closing record
    first_bad: int | None = None  # 1-based line of the first record that fails
    problem: str = ""

    def describe(self) -> str:
        if not self.intact:
            return f"{self.path}: TAMPERED at line {self.first_bad}: {self.problem}"
        if not self.complete:
            why = f": {self.problem}" if self.problem else ""
            return f"{self.path}: intact but incomplete ({self.records} records, no closing record{why})"
        return f"{self.path}: ok ({self.records} records)"


def verify(path: Path) -> Verification:
    path = Path(path)
    prev = GENESIS
    count = 0
    closed = False
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return Verification(path, 0, False, False, 1, f"cannot read: {exc.strerror}")
    lines = raw.split(b"\n")
    torn_tail = lines[-1] != b""
    if not torn_tail:
        lines = lines[:-1]
    for number, line in enumerate(lines, start=1):
        last_line = number == len(lines)
        if closed:
            return Verification(path, count, False, True, number, "record after the closing record")
        try:
            record = json.loads(line.decode("utf-8"))
            if not isinstance(record, dict):
                raise ValueError("not an object")
        except (ValueError, UnicodeDecodeError):
            if last_line and torn_tail:
                return Verification(path, count, True, False, None, "last record was cut off mid-write")
            return Verification(path, count, False, False, number, "not a JSON record")
        if record.get("seq") != count:
            return Verification(
                path,
                count,
                False,
                False,
                number,
                f"seq is {record.get('seq')!r}, expected {count} (record deleted, inserted or moved)",
            )
        if record.get("prev") != prev:
            return Verification(
                path,
                count,
                False,
                False,
                number,
                "prev does not match the previous record's hash (record deleted, inserted or moved)",
            )
        if record.get("hash") != record_hash(record):
            return Verification(
                path, count, False, False, number, "hash does not match the record's content (record edited)"
            )
        if count == 0 and record.get("type") != "header":
            return Verification(path, count, False, False, number, "first record is not a header")
        prev = record["hash"]
        count += 1
        closed = record.get("type") == "closing"
    if count == 0:
        return Verification(path, 0, False, False, 1, "empty transcript")
    return Verification(path, count, True, closed, None, "" if closed else "conversation did not finish")
