"""The request head's rows (chaperone.reviewer_head.requests), its training on a few dozen fake cached rows,
and `python run.py reviewer train-requests`'s bad input: one line, exit 2, saying what to run."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from chaperone.cli import main
from chaperone.models import hidden_states
from chaperone.models.gguf import GGUF_SHA256
from chaperone.reviewer_head import data, requests
from chaperone.reviewer_head.head import load_head
from chaperone.reviewer_head.prompt import load_prompt, load_request_prompt
from tests.support import request_heads


def test_rows_have_a_source_group_and_licence_and_are_split_by_group(fake_shared):
    rows, summary = requests.build(0, shared=fake_shared["shared"])
    by = {}
    for r in rows:
        by.setdefault(r.row.source, []).append(r)
        assert r.row.draft == "" and r.row.licence == requests.LICENCES[r.row.source] and r.row.group
        assert r.part == data.part_of(r.row.group, 0)
    xstest = by["xstest"]
    assert len(xstest) == 450 and sum(r.row.harmful for r in xstest) == 200
    assert all(r.row.harmful for r in by["jbb_goals"] + by["gptfuzz_questions"])
    assert not any(r.row.harmful for r in by["truthfulqa_questions"])
    # JailbreakBench goals and GPTFuzz questions share questions: each is kept once (JailbreakBench's copy).
    assert len(by["jbb_goals"]) == 25 and len(by["gptfuzz_questions"]) == 5
    assert summary["dropped"]["duplicates"] == {"gptfuzz_questions": 25}
    assert len(by["truthfulqa_questions"]) == 30  # one per question
    again, _ = requests.build(0, shared=fake_shared["shared"])
    assert [r.manifest_line() for r in again] == [r.manifest_line() for r in rows]


def test_a_small_training_run_writes_a_request_head_that_loads_and_scores(tmp_path):
    out, _manifest, _cache = request_heads.train_fake_head(tmp_path)
    prompt = load_request_prompt()
    with pytest.raises(Exception, match="another head prompt"):
        load_head(out, model_sha256=GGUF_SHA256, prompt_sha256=load_prompt().sha256)
    head = load_head(out, model_sha256=GGUF_SHA256, prompt_sha256=prompt.sha256)
    assert head.outputs == ["not_ok"] and head.card["prompt"]["file"] == "config/request_head.yaml"
    rng = np.random.default_rng(9)
    harmful = head.score(request_heads.vector(rng, True), layers=request_heads.LAYERS)["not_ok"]
    harmless = head.score(request_heads.vector(rng, False), layers=request_heads.LAYERS)["not_ok"]
    assert harmful > 0.5 > harmless
    figures = head.card["figures"]
    assert figures["loso_xstest"]["n"] == 12 and figures["loso_xstest"]["auc"] > 0.9
    fitted = head.card["training"]["fitted_on"]
    assert "xstest" not in fitted["loso_xstest"] and fitted["shipped"]["xstest"] == 6
    threshold = head.card["request_threshold"]
    assert 0 < threshold["value"] < 1 and threshold["harmful_sent_back"] <= 0.05
    assert out.with_suffix(".scores.jsonl").is_file()


def _run(*args):
    return CliRunner().invoke(main, ["reviewer", "train-requests", *args], obj={})


def _one_error_line(result):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in result.output, result.stderr
    return lines[0]


def test_train_requests_bad_input_is_one_line_saying_what_to_run(tmp_path, monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("bad input must be refused before the model is loaded")

    monkeypatch.setattr(hidden_states.HiddenStateExtractor, "load", no_model)
    line = _one_error_line(_run("--manifest", str(tmp_path / "nowhere.jsonl.gz")))
    assert "python -m chaperone.reviewer_head.requests --seed 0" in line
    _out, manifest, _cache = request_heads.train_fake_head(tmp_path / "fake")
    line = _one_error_line(_run("--manifest", str(manifest), "--cache", str(tmp_path / "empty")))
    assert "python run.py reviewer train-requests --extract" in line and "--cache" in line
    assert "--layers" in _one_error_line(_run("--layers", "4,x"))
    assert "--threads" in _one_error_line(_run("--manifest", str(manifest), "--extract", "--threads", "0"))


def test_train_requests_trains_from_the_cache(tmp_path):
    _out, manifest, cache = request_heads.train_fake_head(tmp_path)
    out = tmp_path / "cli" / "request-head.npz"
    result = _run(
        "--manifest", str(manifest), "--cache", str(cache.folder.parent), "--layers", "3,7", "--out", str(out)
    )
    assert result.exit_code == 0, result.output
    assert "XSTest left out" in result.stdout and "request_threshold" in result.stdout
    assert load_head(out, model_sha256=GGUF_SHA256, prompt_sha256=load_request_prompt().sha256)
