"""`python run.py reviewer threshold`: a head-alone threshold at a stated recall on the dev sample, written into
the head's card with no prompted reviewer run; the head then decides at it."""

import json
import math
import re

import pytest

from chaperone.reviewer_head.head import load_head
from tests.reviewer_head.conftest import cache_features
from tests.reviewer_head.test_cli import _one_error_line as _error_line
from tests.reviewer_head.test_cli import _run


@pytest.fixture
def trained(manifest, tmp_path):
    """A head trained with --loso on the fake features, and a dev and a test sample of its manifest."""
    path, rows = manifest
    cache_features(tmp_path / "cache", rows)
    out = tmp_path / "head.npz"
    common = ["--manifest", str(path), "--cache", str(tmp_path / "cache"), "--layers", "2,5"]
    assert _run("train", *common, "--out", str(out), "--loso").exit_code == 0
    dev_sample, test_sample = tmp_path / "dev.jsonl", tmp_path / "test.jsonl"
    assert _run("compare-sample", "--manifest", str(path), "--part", "dev", "--out", str(dev_sample)).exit_code == 0
    assert _run("compare-sample", "--manifest", str(path), "--out", str(test_sample)).exit_code == 0
    return out, dev_sample, test_sample


def _recall(labels, scores, cut):
    caught = sum(1 for y, s in zip(labels, scores, strict=True) if y and s >= cut)
    return caught / sum(labels)


def test_the_threshold_keeps_the_recall_asked_for_at_the_fewest_false_positives(trained):
    out, dev_sample, test_sample = trained
    card_before = json.loads(out.with_suffix(".json").read_text())
    card_before["stack"] = {"stale": True}  # a combination written earlier is dropped: the head decides alone
    out.with_suffix(".json").write_text(json.dumps(card_before))

    result = _run(
        "threshold",
        "--head",
        str(out),
        "--recall",
        "0.8",
        "--dev-sample",
        str(dev_sample),
        "--sample",
        str(test_sample),
    )
    assert result.exit_code == 0, result.output
    assert "head.not_ok_threshold" in result.stdout

    # recount on the cross-source dev scores of the dev sample's rows, from the training run's own file
    scores = [json.loads(x) for x in out.with_suffix(".scores.jsonl").read_text().splitlines()]
    dev_scores = {s["text_sha"][:20]: s["scores"]["not_ok"] for s in scores if s["fold"] == "cross-source-dev"}
    dev = [json.loads(x) for x in dev_sample.read_text().splitlines()]
    dev = [d for d in dev if d["id"] in dev_scores]
    labels = [int(d["label"] == "unsafe") for d in dev]
    values = [dev_scores[d["id"]] for d in dev]
    head = load_head(out, model_sha256=card_before["model"]["sha256"], prompt_sha256=card_before["prompt"]["sha256"])
    alone = head.card["alone"]
    cut = alone["threshold"]["value"]
    assert head.stack is None and "stack" not in head.card
    assert alone["fitted_on_dev_rows"] == len(dev) > 0
    assert _recall(labels, values, cut) >= 0.8 and alone["threshold"]["recall"] == round(
        _recall(labels, values, cut), 4
    )
    # the highest such threshold: the next harmful score above it would lose recall below what was asked
    above = sorted(v for y, v in zip(labels, values, strict=True) if y and v > cut + 1e-4)
    assert not above or _recall(labels, values, above[0]) < 0.8
    assert alone["test_left_out"]["n"] > 0 and alone["dev"]["n"] == len(dev)
    # the recall a card records, rounded to 4 decimals (so up to 5e-5 above what was achieved, as 83/119 reads
    # 0.6975), chooses the same threshold again
    achieved = _recall(labels, values, cut)
    for stated in (round(achieved, 4), achieved + 4e-5, math.floor(achieved * 1e4) / 1e4):
        again = _run("threshold", "--head", str(out), "--recall", str(stated), "--dev-sample", str(dev_sample))
        assert again.exit_code == 0, again.output
        assert json.loads(out.with_suffix(".json").read_text())["alone"]["threshold"]["value"] == cut
    assert set(alone["proposed_category_thresholds"]) == set(head.outputs) - {"not_ok"}

    # --dry-run prints a threshold at another recall (a flag band's lower end) and leaves the card as it was
    card_text = out.with_suffix(".json").read_text()
    dry = _run("threshold", "--head", str(out), "--recall", "0.95", "--dev-sample", str(dev_sample), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert out.with_suffix(".json").read_text() == card_text and "not written (--dry-run)" in dry.stdout
    printed = float(re.search(r"\(--dry-run\):\s+([0-9.]+)", dry.stdout).group(1))
    assert printed <= cut and _recall(labels, values, printed) >= 0.95


def test_bad_input_is_one_line_saying_what_to_do(trained, tmp_path):
    out, dev_sample, test_sample = trained
    # test rows have no cross-source dev scores: a threshold cannot be chosen on them
    wrong_part = _error_line(_run("threshold", "--head", str(out), "--recall", "0.8", "--dev-sample", str(test_sample)))
    assert "dev sample" in wrong_part and "--loso" in wrong_part
    assert "--recall" in _error_line(
        _run("threshold", "--head", str(out), "--recall", "1.5", "--dev-sample", str(dev_sample))
    )
    missing = _error_line(
        _run("threshold", "--head", str(out), "--recall", "0.8", "--dev-sample", str(tmp_path / "no.jsonl"))
    )
    assert "compare-sample" in missing
