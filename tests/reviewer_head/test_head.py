"""A head trained on a few dozen synthetic rows round-trips through its files, scores, and is refused for
another model or prompt."""

import json

import numpy as np
import pytest

from chaperone.reviewer_head import data, train
from chaperone.reviewer_head.features import FeatureCache, extract_missing
from chaperone.reviewer_head.head import HeadError, load_head
from chaperone.reviewer_head.prompt import load_prompt

LAYERS = (2, 5)
WIDTH = 16
MODEL = "a" * 64


@pytest.fixture(scope="module")
def trained(fake_shared, tmp_path_factory):
    """The real training command on a manifest of the fake sources and synthetic cached features: harmful
    rows lean one way at layer 5, so a head can learn them."""
    rows, summary = data.build(
        0,
        caps={
            "gptfuzz": 24,
            "truthfulqa": 24,
            "diasafety": 24,
            "bbq": 12,
            "toxigen_seeds": 12,
            "jbb": 12,
            "xstest_answers": 6,
        },
        **fake_shared,
    )
    tmp_path = tmp_path_factory.mktemp("trained")
    manifest = tmp_path / "split.jsonl"
    data.write_manifest(rows, summary, manifest)
    prompt = load_prompt()
    cache = FeatureCache(tmp_path / "cache", MODEL, prompt.sha256, LAYERS, WIDTH)
    label = {r.row.text_sha: r.row.harmful for r in rows}

    def fake(key):
        rng = np.random.default_rng(int(key[:8], 16))
        x = rng.normal(size=(len(LAYERS), WIDTH)).astype(np.float32)
        x[1, :4] += 1.5 if label[key] else -1.5
        return x, 20, 0.01

    extract_missing(cache, [(r.row.text_sha, r.row.text_sha) for r in rows], fake, shard_rows=16, progress=False)
    out = tmp_path / "heads" / "reviewer-head.npz"
    card = train.main(
        [
            "--manifest",
            str(manifest),
            "--layers",
            "2,5",
            "--cache",
            str(tmp_path / "cache"),
            "--out",
            str(out),
            "--model-sha256",
            MODEL,
            "--cv-report",
            "--loso",
        ]
    )
    return out, card, cache, rows, prompt


def test_a_trained_head_round_trips_and_scores(trained):
    out, _card, cache, rows, prompt = trained
    assert out.is_file() and out.with_suffix(".json").is_file()
    head = load_head(out, model_sha256=MODEL, prompt_sha256=prompt.sha256)
    assert 5 in head.layers and head.outputs[0] == "not_ok" and "hate_bias" in head.outputs
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["model"]["sha256"] == MODEL and saved["prompt"]["sha256"] == prompt.sha256
    assert saved["data"]["split_seed"] == 0 and "gptfuzz" in saved["data"]["licences"]
    assert saved["figures"]["test"]["overall"]["auc"] > 0.8  # the synthetic signal is learnable
    assert set(saved["figures"]["loso"]) >= {"gptfuzz", "truthfulqa"}
    harmful = next(r.row for r in rows if r.row.harmful)
    states = cache.get(harmful.text_sha)
    scores = head.score(states, layers=cache.layers)
    assert set(scores) == set(head.outputs) and all(0.0 <= p <= 1.0 for p in scores.values())
    as_mapping = head.score({n: states[i] for i, n in enumerate(cache.layers)})
    assert as_mapping == pytest.approx(scores)
    np.load(out, allow_pickle=False)  # arrays only


def test_a_head_for_another_model_or_prompt_is_refused(trained):
    out, _card, _cache, _rows, prompt = trained
    with pytest.raises(HeadError, match="only works on the hidden states of its own model"):
        load_head(out, model_sha256="b" * 64, prompt_sha256=prompt.sha256)
    with pytest.raises(HeadError, match="another head prompt"):
        load_head(out, model_sha256=MODEL, prompt_sha256="c" * 64)
    with pytest.raises(HeadError, match="needs both"):
        load_head(out.with_name("missing.npz"), model_sha256=MODEL, prompt_sha256=prompt.sha256)


def test_a_head_whose_arrays_do_not_match_its_card_is_refused(trained, tmp_path):
    out, _card, _cache, _rows, prompt = trained
    copy = tmp_path / out.name
    copy.write_bytes(out.read_bytes())
    card = json.loads(out.with_suffix(".json").read_text())
    card["width"] = WIDTH - 1
    copy.with_suffix(".json").write_text(json.dumps(card))
    out = copy
    with pytest.raises(HeadError, match="do not match its card"):
        load_head(out, model_sha256=MODEL, prompt_sha256=prompt.sha256)


def test_curve_figures():
    figs = train.curve_figures([0, 0, 0, 1, 1], [0.1, 0.2, 0.3, 0.8, 0.9])
    assert figs["auc"] == 1.0 and figs["recall_at_fpr_0.01"] == 1.0 and figs["fpr_at_recall_0.95"] == 0.0
    assert train.curve_figures([1, 1], [0.2, 0.3])["auc"] is None
