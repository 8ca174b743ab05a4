"""Hash-chained transcripts: written as events happen, and any edit is found by verify."""

import itertools
import json

import pytest

from chaperone.audit.redaction import Redactor
from chaperone.audit.transcript import TranscriptWriter, read_records, record_hash, verify


def write_sample(tmp_path, records=4, close=True):
    w = TranscriptWriter(tmp_path, {"run_id": "r1", "kind": "test"})
    for i in range(records):
        w.append("user_turn", {"turn": i + 1, "content": f"message {i}"})
    if close:
        w.close("approved", {"turns": records})
    return w.path


def lines(path):
    return path.read_text().splitlines(keepends=True)


def test_chain_is_intact_and_every_record_is_linked(tmp_path):
    path = write_sample(tmp_path)
    result = verify(path)
    assert result.intact and result.complete and result.records == 6
    recs = list(read_records(path))
    assert recs[0]["type"] == "header" and recs[-1]["type"] == "closing"
    for prev, cur in itertools.pairwise(recs):
        assert cur["prev"] == prev["hash"] and cur["seq"] == prev["seq"] + 1
        assert cur["hash"] == record_hash(cur)


def test_records_are_on_disk_before_the_conversation_ends(tmp_path):
    w = TranscriptWriter(tmp_path, {"run_id": "r1"})
    w.append("user_turn", {"content": "hello"})
    # Not closed: another reader already sees both records.
    assert [r["type"] for r in read_records(w.path)] == ["header", "user_turn"]
    result = verify(w.path)
    assert result.intact and not result.complete


def test_an_edited_character_is_found(tmp_path):
    path = write_sample(tmp_path)
    text = path.read_text().replace("message 2", "message 9")
    path.write_text(text)
    result = verify(path)
    assert not result.intact and result.first_bad == 4 and "edited" in result.problem


def test_deleted_inserted_and_swapped_records_are_found(tmp_path):
    path = write_sample(tmp_path)
    original = lines(path)
    for mutated in (
        original[:2] + original[3:],  # deleted
        [*original[:2], original[1], *original[2:]],  # duplicated / inserted
        [*original[:2], original[3], original[2], *original[4:]],  # swapped
    ):
        path.write_text("".join(mutated))
        result = verify(path)
        assert not result.intact and result.first_bad == 3, result.describe()


def test_a_torn_last_line_is_incomplete_not_tampered(tmp_path):
    path = write_sample(tmp_path, close=False)
    with path.open("a") as fh:
        fh.write('{"seq": 5, "type": "dra')  # the process died mid-write
    result = verify(path)
    assert result.intact and not result.complete
    assert len(list(read_records(path))) == 5


def test_secrets_are_redacted_before_writing(tmp_path):
    w = TranscriptWriter(tmp_path, {"run_id": "r1"}, Redactor({"hunter2-secret-key"}))
    w.append("draft", {"content": "my key is hunter2-secret-key and sk-abcdefghijklmnopqrstuvwx"})
    w.close("approved", {})
    text = w.path.read_text()
    assert "hunter2-secret-key" not in text and "sk-abcdefghijklmnop" not in text
    assert verify(w.path).intact
    assert json.loads(text.splitlines()[1])["content"].count("[REDACTED]") == 2


def test_a_changed_character_anywhere_is_caught_at_its_line(tmp_path):
    import random

    from chaperone.audit.transcript import TranscriptWriter, verify

    writer = TranscriptWriter(tmp_path / "t", {"kind": "test"})
    for n in range(4):
        writer.append("draft", {"turn": 1, "content": f"draft number {n} with some text"})
    writer.close("approved", {"turns": 1})
    path = writer.path
    original = path.read_bytes()
    lines = original.split(b"\n")[:-1]
    rng = random.Random(3)
    tried = 0
    for index, line in enumerate(lines):
        for position in rng.sample(range(len(line)), 12):  # 12 random characters of every record
            changed = bytearray(line)
            changed[position] = ord("x") if changed[position] != ord("x") else ord("y")
            path.write_bytes(b"\n".join([*lines[:index], bytes(changed), *lines[index + 1 :]]) + b"\n")
            check = verify(path)
            assert not check.intact and check.first_bad == index + 1, (index, position, check.describe())
            tried += 1
    path.write_bytes(original)
    assert verify(path).intact and tried == 12 * len(lines)


def _close_while_writing(directory) -> tuple[TranscriptWriter, list[bool]]:
    """4 threads close one transcript while 4 others append to it, all let go at once."""
    import threading

    from chaperone.audit.transcript import TranscriptClosedError

    w = TranscriptWriter(directory, {"run_id": "r1", "kind": "test"})
    start = threading.Barrier(8)
    closed: list[bool] = []

    def closer() -> None:
        start.wait()
        closed.append(w.close("interrupted", {}))

    def writer(n: int) -> None:
        start.wait()
        for i in range(50):
            try:
                w.append("error", {"message": f"{n}-{i}"})
            except TranscriptClosedError:
                return

    threads = [threading.Thread(target=closer) for _ in range(4)]
    threads += [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return w, closed


def test_closing_is_once_and_serialized_whoever_closes_from_whichever_thread(tmp_path):
    """A server closes a conversation off the event loop while the loop may still write to it: however the
    closes and appends interleave, one closing record, the last one, and a chain that verifies."""
    for attempt in range(20):
        w, closed = _close_while_writing(tmp_path / str(attempt))
        assert sorted(closed) == [False, False, False, True]
        records = list(read_records(w.path))
        assert [r["type"] for r in records].count("closing") == 1 and records[-1]["type"] == "closing"
        result = verify(w.path)
        assert result.intact and result.complete, result.describe()
        assert w.records == len(records)


def test_an_event_after_closing_is_logged_not_written_nor_raised(tmp_path):
    import pytest
    from loguru import logger
    from pydantic import BaseModel

    from chaperone.audit.transcript import TranscriptClosedError

    class Late(BaseModel):
        kind: str = "error"
        message: str = "late"

    w = TranscriptWriter(tmp_path, {"run_id": "r1", "kind": "test"})
    w.close("interrupted", {})
    seen: list[str] = []
    sink = logger.add(lambda m: seen.append(str(m)), level="WARNING")
    try:
        w(Late())  # as a sink: no exception into the code that emitted the event
    finally:
        logger.remove(sink)
    assert any("error event after" in s and "not recorded" in s for s in seen)
    with pytest.raises(TranscriptClosedError):
        w.append("error", {"message": "late"})  # a direct append after closing is still a bug
    assert w.close("again", {}) is False
    result = verify(w.path)
    assert result.intact and result.complete and result.records == 2


def test_a_process_killed_while_creating_a_transcript_leaves_none_or_one_with_its_header(tmp_path, monkeypatch):
    """The header is in the file from the moment the transcript's name exists: a kill between creating the
    file and writing its first record (here: linking fails) leaves no transcript, never an empty one that
    reads as tampered."""
    import os

    def killed(src, dst):
        raise KeyboardInterrupt  # stands in for SIGKILL at that instant

    monkeypatch.setattr(os, "link", killed)
    with pytest.raises(KeyboardInterrupt):
        TranscriptWriter(tmp_path, {"kind": "test"})
    assert list(tmp_path.glob("*.jsonl")) == [] and list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    writer = TranscriptWriter(tmp_path, {"kind": "test"})
    assert [r["type"] for r in read_records(writer.path)] == ["header"]  # before any append, the header is there
    assert oct(writer.path.stat().st_mode & 0o777) == "0o600"
    writer.close("done", {})
    assert verify(writer.path).intact and verify(writer.path).complete
