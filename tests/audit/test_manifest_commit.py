"""Run manifests under concurrent closes: lines of conversations closing at the same moment share one write
and one fsync (a group commit), and each caller returns only once its own line is on disk."""

from __future__ import annotations

import os
import threading

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from chaperone.audit import manifest, signing

REAL_FSYNC = os.fsync


def close_from_threads(folder, n, fsync, monkeypatch, signer=None):
    """n threads record a transcript each at once, with `fsync` in place of os.fsync."""
    results: dict[int, dict] = {}
    errors: dict[int, BaseException] = {}

    def one(i):
        try:
            results[i] = manifest.record(
                folder, "run", folder / f"c{i}.jsonl", 3 + i, f"{i:064x}", "approved", f"id{i}", signer=signer
            )
        except OSError as exc:
            errors[i] = exc

    monkeypatch.setattr(manifest.os, "fsync", fsync)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results, errors


def held_until_queued(path, n, synced):
    """An fsync whose first call waits until the other n - 1 callers are queued behind it."""

    def fsync(fd):
        if not synced:
            committer = manifest._committer(path)
            while True:
                with committer._cond:
                    if len(committer._waiting) == n - 1:
                        break
                threading.Event().wait(0.005)
        synced.append(fd)
        REAL_FSYNC(fd)

    return fsync


def test_concurrent_closes_share_fsyncs_and_every_line_is_chained_and_returned(tmp_path, monkeypatch):
    n, synced = 12, []
    path = manifest.manifest_path(tmp_path, "run")
    results, errors = close_from_threads(tmp_path, n, held_until_queued(path, n, synced), monkeypatch)
    assert not errors
    assert len(synced) == 2  # the first line alone, then the eleven queued behind it, in one write and fsync
    reading = manifest.read(path)
    assert reading.problems == []  # every prev chains to the line before it
    written = {line.entry["transcript"]: line.entry for line in reading.lines}
    assert sorted(written) == sorted(f"c{i}.jsonl" for i in range(n))
    for i, entry in results.items():  # each caller got exactly the line written for it
        assert written[f"c{i}.jsonl"] == entry
        assert entry["records"] == 3 + i and entry["conversation_id"] == f"id{i}"


def test_a_failed_write_fails_every_caller_of_its_batch(tmp_path, monkeypatch):
    def broken(fd):
        raise OSError(5, "Input/output error")

    results, errors = close_from_threads(tmp_path, 4, broken, monkeypatch)
    assert not results  # nobody is told a line is durable when its fsync failed
    assert sorted(errors) == [0, 1, 2, 3]


def test_each_line_of_a_batch_is_signed_over_its_own_prev(tmp_path, monkeypatch):
    private = Ed25519PrivateKey.generate()
    signer = signing.Signer(private, signing.key_id(private.public_key()))
    n, synced = 6, []
    path = manifest.manifest_path(tmp_path, "run")
    _, errors = close_from_threads(tmp_path, n, held_until_queued(path, n, synced), monkeypatch, signer)
    assert not errors and len(synced) == 2
    reading = manifest.read(path)
    assert reading.problems == [] and len(reading.lines) == n
    keys = {signer.key_id: private.public_key()}
    assert all(signing.check(line.entry, keys) == ("", "") for line in reading.lines)


def test_one_caller_alone_writes_its_line_at_once(tmp_path):
    entry = manifest.record(tmp_path, "solo", tmp_path / "a.jsonl", 5, "h", "withheld")
    assert manifest.entries(manifest.manifest_path(tmp_path, "solo")) == {"a.jsonl": entry}
    assert entry["prev"] == manifest.GENESIS
