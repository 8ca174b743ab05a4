"""`python run.py reviewer extract|train`: bad input is one line and exit 2 saying what to run; a small run of
the real training writes a head that loads."""

import numpy as np
import pytest
from click.testing import CliRunner

from chaperone.cli import main
from chaperone.models import hidden_states
from chaperone.models.gguf import GGUF_SHA256
from chaperone.reviewer_head import data
from chaperone.reviewer_head.features import FeatureCache, extract_missing
from chaperone.reviewer_head.head import load_head
from chaperone.reviewer_head.prompt import load_prompt

LAYERS = (2, 5)
WIDTH = 16


def _run(*args):
    return CliRunner().invoke(main, ["reviewer", *args], obj={})


def _one_error_line(result):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in result.output, result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def manifest(fake_shared, tmp_path_factory):
    caps = {"gptfuzz": 24, "truthfulqa": 24, "diasafety": 24, "bbq": 12, "toxigen_seeds": 12, "jbb": 12}
    rows, summary = data.build(0, caps={**caps, "xstest_answers": 6}, **fake_shared)
    path = tmp_path_factory.mktemp("cli") / "split.jsonl"
    data.write_manifest(rows, summary, path)
    return path, rows


def test_train_without_a_feature_cache_says_what_to_run(manifest, tmp_path):
    path, _rows = manifest
    line = _one_error_line(_run("train", "--manifest", str(path), "--cache", str(tmp_path / "cache")))
    assert "python run.py reviewer extract" in line and "--cache" in line and "--manifest" in line
    assert not (tmp_path / "cache").exists()  # checking made no cache folder


def test_train_and_extract_refuse_a_missing_manifest_and_bad_options(tmp_path, monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("bad input must be refused before the model is loaded")

    monkeypatch.setattr(hidden_states.HiddenStateExtractor, "load", no_model)
    missing = str(tmp_path / "nowhere.jsonl")
    for command in ("train", "extract"):
        line = _one_error_line(_run(command, "--manifest", missing))
        assert "python -m chaperone.reviewer_head.data --seed 0" in line
        assert "--layers" in _one_error_line(_run(command, "--layers", "4,x"))
    assert "--limit" in _one_error_line(_run("extract", "--limit", "0"))


def test_train_writes_a_head_that_loads(manifest, tmp_path):
    path, rows = manifest
    prompt = load_prompt()
    cache = FeatureCache(tmp_path / "cache", GGUF_SHA256, prompt.sha256, LAYERS, WIDTH)
    label = {r.row.text_sha: r.row.harmful for r in rows}

    def fake(key):
        x = np.random.default_rng(int(key[:8], 16)).normal(size=(len(LAYERS), WIDTH)).astype(np.float32)
        x[1, :4] += 1.5 if label[key] else -1.5
        return x, 20, 0.01

    extract_missing(cache, [(r.row.text_sha, r.row.text_sha) for r in rows], fake, progress=False)
    out = tmp_path / "heads" / "head.npz"
    args = ["--manifest", str(path), "--cache", str(tmp_path / "cache"), "--layers", "2,5", "--out", str(out)]
    result = _run("train", *args, "--loso")
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.stdout and "left out" in result.stdout and "test: AUC" in result.stdout
    head = load_head(out, model_sha256=GGUF_SHA256, prompt_sha256=prompt.sha256)
    assert head.layers and "not_ok" in head.outputs and head.card["figures"]["loso"]
