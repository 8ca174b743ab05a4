"""The feature cache: keyed by model, prompt and layers; an interrupted extraction resumes where it stopped."""

import json

import numpy as np
import pytest

from chaperone.reviewer_head.features import FeatureCache, extract_missing

LAYERS = (3, 7)
WIDTH = 8


def _fake_extract(calls):
    def run(prompt):
        calls.append(prompt)
        seed = sum(map(ord, prompt))
        return np.random.default_rng(seed).normal(size=(len(LAYERS), WIDTH)).astype(np.float32), 10, 0.01

    return run


def _items(n):
    return [(f"key{i}", f"prompt {i}") for i in range(n)]


def test_an_interrupted_extraction_resumes_where_it_stopped(tmp_path):
    cache = FeatureCache(tmp_path, "m" * 64, "p" * 64, LAYERS, WIDTH)
    calls = []
    stats = extract_missing(cache, _items(10), _fake_extract(calls), shard_rows=4, progress=False, stop_after=6)
    assert stats.done == 6 and len(cache) == 6  # shards of 4 and 2
    # a killed run: a half-written shard file and a torn index line are ignored
    (cache.folder / "shards" / "00009.npy.tmp").write_bytes(b"junk")
    with cache.index_path.open("a") as fh:
        fh.write('{"key": "key9", "sha')
    reopened = FeatureCache(tmp_path, "m" * 64, "p" * 64, LAYERS, WIDTH)
    assert len(reopened) == 6
    calls.clear()
    stats = extract_missing(reopened, _items(10), _fake_extract(calls), shard_rows=4, progress=False)
    assert calls == [f"prompt {i}" for i in range(6, 10)] and stats.skipped == 6 and len(reopened) == 10
    expected, *_ = _fake_extract([])("prompt 8")
    assert np.array_equal(reopened.get("key8"), expected)
    m = reopened.matrix(["key1", "key8"], [7])
    assert m.shape == (2, WIDTH) and np.array_equal(m[1], expected[1])
    lines = [json.loads(x) for x in cache.index_path.read_text().splitlines() if x.endswith("}")]
    assert sorted(x["key"] for x in lines) == [f"key{i}" for i in range(10)]


def test_an_index_line_whose_shard_is_missing_is_redone(tmp_path):
    cache = FeatureCache(tmp_path, "m" * 64, "p" * 64, LAYERS, WIDTH)
    extract_missing(cache, _items(3), _fake_extract([]), shard_rows=2, progress=False)
    (cache.folder / "shards" / "00001.npy").unlink()  # the second shard (one row) is gone
    assert len(FeatureCache(tmp_path, "m" * 64, "p" * 64, LAYERS, WIDTH)) == 2


def test_another_model_prompt_or_layer_set_gets_its_own_folder(tmp_path):
    a = FeatureCache(tmp_path, "m" * 64, "p" * 64, LAYERS, WIDTH)
    assert FeatureCache(tmp_path, "n" * 64, "p" * 64, LAYERS, WIDTH).folder != a.folder
    assert FeatureCache(tmp_path, "m" * 64, "q" * 64, LAYERS, WIDTH).folder != a.folder
    assert FeatureCache(tmp_path, "m" * 64, "p" * 64, (3,), WIDTH).folder != a.folder
    meta = json.loads((a.folder / "meta.json").read_text())
    meta["prompt_sha256"] = "x"
    (a.folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="refusing to mix"):
        FeatureCache(tmp_path, "m" * 64, "p" * 64, LAYERS, WIDTH)


def test_a_reader_beside_a_running_extraction_changes_nothing(tmp_path):
    writer = FeatureCache(tmp_path, "m" * 64, "p" * 64, LAYERS, WIDTH)
    extract_missing(writer, _items(3), _fake_extract([]), shard_rows=2, progress=False)
    with writer.index_path.open("a") as fh:  # the writer is halfway through appending a line
        fh.write('{"key": "key3", "sha')
    before = writer.index_path.read_bytes()
    reader = FeatureCache(tmp_path, "m" * 64, "p" * 64, LAYERS, readonly=True)
    assert len(reader) == 3 and reader.width == WIDTH
    assert writer.index_path.read_bytes() == before  # the half line is the writer's to finish, not cut
    with pytest.raises(ValueError, match="read-only"):
        reader.write_shard(["k"], np.zeros((1, len(LAYERS), WIDTH)), [1], [0.1])


def test_a_reader_of_a_missing_cache_creates_nothing(tmp_path):
    with pytest.raises(ValueError, match="no feature cache"):
        FeatureCache(tmp_path, "m" * 64, "p" * 64, LAYERS, readonly=True)
    assert list(tmp_path.iterdir()) == []


def test_in_a_log_each_shard_written_is_one_line_of_progress(tmp_path):
    """Extraction runs for an hour in the background: with its output not a terminal, the bar draws nothing
    until the end, so every shard written prints rows done, the reading speed and the time left."""
    import io

    from rich.console import Console

    out = io.StringIO()
    cache = FeatureCache(tmp_path, "m" * 64, "p" * 64, LAYERS, WIDTH)
    extract_missing(cache, _items(10), _fake_extract([]), shard_rows=4, console=Console(file=out, width=200))
    lines = [line for line in out.getvalue().splitlines() if line.startswith("extracting: ")]
    assert [line.split(" · ")[0] for line in lines] == ["extracting: 4/10 rows", "extracting: 8/10 rows"]
    assert all(" · 1000 tok/s · about " in line and " min left (" in line for line in lines)

    quiet = io.StringIO()
    cache = FeatureCache(tmp_path / "quiet", "m" * 64, "p" * 64, LAYERS, WIDTH)
    extract_missing(cache, _items(10), _fake_extract([]), shard_rows=4, progress=False, console=Console(file=quiet))
    assert quiet.getvalue() == ""
