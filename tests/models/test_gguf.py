"""Assembling the embedded model: joined once, checked against its sha256, refused on mismatch."""

import hashlib

import pytest

from chaperone.models import gguf
from chaperone.models.gguf import ModelFileError, ModelParts


def fake_parts(tmp_path, monkeypatch, chunks):
    paths = []
    for i, chunk in enumerate(chunks, start=1):
        p = tmp_path / "parts" / f"part{i:02d}.bin"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(chunk)
        paths.append(p)
    monkeypatch.setattr(gguf, "find_parts", lambda: ModelParts(paths))
    monkeypatch.setattr(gguf, "GGUF_SHA256", hashlib.sha256(b"".join(chunks)).hexdigest())


def test_parts_are_joined_in_order_once(tmp_path, monkeypatch):
    fake_parts(tmp_path, monkeypatch, [b"GGUF-", b"first-", b"second"])
    path = gguf.ensure_model(tmp_path / "cache")
    assert path.read_bytes() == b"GGUF-first-second"
    mtime = path.stat().st_mtime_ns
    assert gguf.ensure_model(tmp_path / "cache") == path
    assert path.stat().st_mtime_ns == mtime  # not rebuilt


def test_a_cached_file_that_fails_its_checksum_is_refused(tmp_path, monkeypatch):
    fake_parts(tmp_path, monkeypatch, [b"GGUF-", b"good"])
    path = gguf.ensure_model(tmp_path / "cache")
    path.write_bytes(b"GGUF-evil")  # replaced after it was verified
    with pytest.raises(ModelFileError, match="does not match the pinned"):
        gguf.ensure_model(tmp_path / "cache")


def test_damaged_parts_are_refused_and_leave_no_model_behind(tmp_path, monkeypatch):
    fake_parts(tmp_path, monkeypatch, [b"GGUF-", b"good"])
    monkeypatch.setattr(gguf, "GGUF_SHA256", "0" * 64)
    with pytest.raises(ModelFileError, match="damaged"):
        gguf.ensure_model(tmp_path / "cache")
    assert not (tmp_path / "cache" / "models" / gguf.GGUF_NAME).exists()


def test_the_real_parts_are_installed_and_add_up():
    parts = gguf.find_parts()
    assert len(parts.paths) == gguf.PART_COUNT
    assert parts.total_size == gguf.GGUF_SIZE


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CHAPERONE_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert gguf.default_cache_dir() == tmp_path / "elsewhere"
