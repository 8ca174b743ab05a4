"""`python run.py reviewer extract|train`: bad input is one line and exit 2 saying what to run; a small run of
the real training writes a head that loads."""

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from chaperone.cli import main
from chaperone.models import hidden_states
from chaperone.models.gguf import GGUF_SHA256
from chaperone.reviewer_head.features import FeatureCache
from chaperone.reviewer_head.head import load_head
from chaperone.reviewer_head.prompt import load_prompt
from tests.reviewer_head.conftest import FAKE_LAYERS, FAKE_WIDTH, cache_features

LAYERS, WIDTH = FAKE_LAYERS, FAKE_WIDTH


def _run(*args):
    return CliRunner().invoke(main, ["reviewer", *args], obj={})


def _one_error_line(result):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in result.output, result.stderr
    return lines[0]


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


def test_extract_names_the_sources_a_manifest_has_when_asked_for_another(manifest, monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("bad input must be refused before the model is loaded")

    monkeypatch.setattr(hidden_states.HiddenStateExtractor, "load", no_model)
    path, rows = manifest
    line = _one_error_line(_run("extract", "--manifest", str(path), "--source", "gptfuzz", "--source", "nosuch"))
    assert "--source nosuch" in line and "gptfuzz" not in line.split(":")[0]
    assert all(s in line for s in {r.row.source for r in rows})


def test_extract_reads_only_the_sources_asked_for(manifest, monkeypatch, tmp_path):
    """The model is outside the unit under test: a stand-in extractor records which prompts it was given."""
    import chaperone.models.gguf as gguf_module

    class Stand:
        n_layers, width, model_sha256 = 28, WIDTH, GGUF_SHA256

        def __init__(self):
            self.prompts = []

        def extract(self, messages, layers, reuse=False):
            self.prompts.append(messages[-1]["content"])
            states = np.zeros((len(layers), WIDTH), dtype=np.float32)
            return hidden_states.Extraction(tuple(layers), states, 10, 0.01)

    stand = Stand()
    monkeypatch.setattr(hidden_states.HiddenStateExtractor, "load", lambda *a, **k: stand)
    monkeypatch.setattr(gguf_module, "ensure_model", lambda *a, **k: tmp_path / "model.gguf")
    path, rows = manifest
    result = _run("extract", "--manifest", str(path), "--source", "bbq", "--layers", "2,5", "--cache", str(tmp_path))
    assert result.exit_code == 0, result.output
    wanted = [r for r in rows if r.row.source == "bbq"]
    assert wanted and len(stand.prompts) == len(wanted)
    head_prompt = load_prompt()
    assert set(stand.prompts) == {head_prompt.messages(r.row.request, r.row.draft)[-1]["content"] for r in wanted}


def test_extract_reads_a_row_list_through_the_in_context_prompt(manifest, monkeypatch, tmp_path):
    """`--rows` (a head's training rows) and `--prompt` (the in-context layout): only the listed rows, each as
    the assistant's conversation plus the question, the shared system prompt kept in the context, in a cache
    named by that prompt's sha256."""
    import gzip

    import chaperone.models.gguf as gguf_module
    from chaperone.reviewer_head.prompt import default_path

    class Stand:
        n_layers, width, model_sha256 = 28, WIDTH, GGUF_SHA256

        def __init__(self):
            self.calls = []

        def extract(self, messages, layers, reuse=False):
            self.calls.append((messages, reuse))
            return hidden_states.Extraction(tuple(layers), np.zeros((len(layers), WIDTH), dtype=np.float32), 10, 0.01)

    stand = Stand()
    monkeypatch.setattr(hidden_states.HiddenStateExtractor, "load", lambda *a, **k: stand)
    monkeypatch.setattr(gguf_module, "ensure_model", lambda *a, **k: tmp_path / "model.gguf")
    path, rows = manifest
    listed = rows[::3]
    row_list = tmp_path / "rows.txt.gz"
    row_list.write_bytes(gzip.compress("\n".join(r.row.text_sha for r in listed).encode()))
    prompt_file = default_path("reviewer_head_in_context.yaml")
    args = ["extract", "--manifest", str(path), "--layers", "2,5", "--cache", str(tmp_path / "c")]
    result = _run(*args, "--rows", str(row_list), "--prompt", str(prompt_file))
    assert result.exit_code == 0, result.output
    prompt = load_prompt(prompt_file)

    def key(messages):
        return json.dumps(messages, sort_keys=True)

    wanted = sorted(key(prompt.messages(r.row.request, r.row.draft)) for r in listed)
    assert sorted(key(m) for m, _ in stand.calls) == wanted
    assert all(reuse for _, reuse in stand.calls)
    assert len(FeatureCache(tmp_path / "c", GGUF_SHA256, prompt.sha256, [2, 5], WIDTH, readonly=True)) == len(listed)
    stray = tmp_path / "stray.txt"
    stray.write_text("f" * 64 + "\n")
    assert "1 of its 1 rows are not in the manifest" in _one_error_line(_run(*args, "--rows", str(stray)))


def test_train_writes_a_head_that_loads(manifest, tmp_path):
    path, rows = manifest
    prompt = load_prompt()
    cache_features(tmp_path / "cache", rows)
    out = tmp_path / "heads" / "head.npz"
    args = ["--manifest", str(path), "--cache", str(tmp_path / "cache"), "--layers", "2,5", "--out", str(out)]
    result = _run("train", *args, "--loso")
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.stdout and "left out" in result.stdout and "test: AUC" in result.stdout
    head = load_head(out, model_sha256=GGUF_SHA256, prompt_sha256=prompt.sha256)
    assert head.layers and "not_ok" in head.outputs and head.card["figures"]["loso"]


def test_compare_joins_the_prompted_reviewer_and_the_held_out_head_scores_on_the_same_rows(manifest, tmp_path):
    import json

    path, rows = manifest
    cache_features(tmp_path / "cache", rows)
    label = {r.row.text_sha[:20]: r.row.harmful for r in rows}
    out = tmp_path / "head.npz"
    common = ["--manifest", str(path), "--cache", str(tmp_path / "cache"), "--layers", "2,5"]
    assert _run("train", *common, "--out", str(out), "--loso").exit_code == 0
    scores = [json.loads(x) for x in out.with_suffix(".scores.jsonl").read_text().splitlines()]
    loso = [s for s in scores if s["fold"].startswith("loso:")]
    # every left-out row was scored by the head that never saw its source, on that source's untouched test part
    assert loso and all(s["fold"] == f"loso:{s['source']}" and s["part"] == "test" for s in loso)
    assert all(s["part"] == "dev" for s in scores if s["fold"] == "cross-source-dev")
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["training"]["selection"]["by"].startswith("mean AUC on each source's dev part")
    assert card["figures"]["loso_pooled"]["n"] == len(loso)
    thresholds = card["figures"]["cross_source_dev"]["thresholds"]
    assert thresholds["fpr_0.01"]["threshold"] >= thresholds["fpr_0.1"]["threshold"]
    assert {s["text_sha"] for s in scores if s["fold"] == "main" and s["part"] == "test"} == {
        r.row.text_sha for r in rows if r.part == "test"
    }
    sample = tmp_path / "sample.jsonl"
    assert _run("compare-sample", "--manifest", str(path), "--per-source", "4", "--out", str(sample)).exit_code == 0
    chosen = [json.loads(x) for x in sample.read_text().splitlines()]
    assert chosen and all(label[c["id"]] == (c["label"] == "unsafe") for c in chosen)
    assert all(c["request"].strip() for c in chosen)  # the eval needs a prompt: empty requests read "(none)"
    run = tmp_path / "eval"
    run.mkdir()
    # the prompted reviewer's results as the eval writes them: a perfect scorer except one unscored row
    with (run / "results.jsonl").open("w") as fh:
        for i, c in enumerate(chosen):
            unsafe = c["label"] == "unsafe"
            score = None if i == 0 else (0.9 if unsafe else 0.1)
            line = {"id": c["id"], "status": "ok", "decision": "revise" if unsafe else "approve", "score": score}
            fh.write(json.dumps({**line, "seconds": 4.0, "prompt_tokens": 600, "completion_tokens": 3}) + "\n")
        fh.write('{"id": "torn')  # a run still writing
    result = _run("compare", *common, "--eval", str(run), "--sample", str(sample), "--head", str(out), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["joined"] == len(chosen) and report["missing"] == {"prompted": 0, "head_test": 0, "head_loso": 0}
    assert report["overall"]["prompted"]["unscored"] == 1
    assert report["overall"]["prompted_decision"] == {"recall": 1.0, "fpr": 0.0}
    assert set(report["by_source"]) == {c["source"] for c in chosen}
    assert (
        report["cost"]["prompted"]["median_prompt_tokens"] == 600
        and report["cost"]["head"]["median_prompt_tokens"] == 20
    )
    # the combination: fitted on dev rows (head scores from heads that did not fit their source), measured on test
    dev_sample = tmp_path / "dev-sample.jsonl"
    assert _run("compare-sample", "--manifest", str(path), "--part", "dev", "--out", str(dev_sample)).exit_code == 0
    dev_chosen = [json.loads(x) for x in dev_sample.read_text().splitlines()]
    assert {r.part for r in rows for c in dev_chosen if r.row.text_sha.startswith(c["id"])} == {"dev"}
    dev_run = tmp_path / "eval-dev"
    dev_run.mkdir()
    with (dev_run / "results.jsonl").open("w") as fh:
        for c in dev_chosen:
            score = 0.8 if c["label"] == "unsafe" else 0.3
            fh.write(json.dumps({"id": c["id"], "status": "ok", "decision": "approve", "score": score}) + "\n")
    dev_scored = {s["text_sha"][:20] for s in scores if s["fold"] == "cross-source-dev"}
    args = ["--eval", str(run), "--sample", str(sample), "--head", str(out), "--dev-eval", str(dev_run)]
    stacked = _run("compare", *common, *args, "--dev-sample", str(dev_sample), "--json")
    assert stacked.exit_code == 0, stacked.output
    stacked = json.loads(stacked.stdout)
    assert stacked["stack"]["fitted_on_dev_rows"] == sum(1 for c in dev_chosen if c["id"] in dev_scored) > 0
    assert stacked["stack"]["weights"]["prompted"] > 0  # the (here perfect) prompted score counts
    assert stacked["overall"]["stacked_left_out"]["n"] == len(chosen)
    # written into the card, the head scores with it: the same probability the fitted combination gives
    assert _run("compare", *common, *args, "--dev-sample", str(dev_sample), "--stack-into").exit_code == 0
    head = load_head(out, model_sha256=card["model"]["sha256"], prompt_sha256=card["prompt"]["sha256"])
    stack = head.stack
    assert stack["weights"] == stacked["stack"]["weights"] and 0 < stack["threshold"]["value"] <= 1
    assert stack["threshold"]["recall"] == 1.0 and stack["threshold"]["fpr"] == 0.0  # dev separates perfectly
    z = stack["intercept"] + stack["weights"]["head"] * math.log(0.2 / 0.8) + stack["weights"]["prompted"] * math.log(4)
    assert head.stacked(0.2, 0.8) == pytest.approx(1 / (1 + math.exp(-z)))
    # the operating point: the combination at its dev-chosen threshold, on the test rows, with the head that saw
    # each row's source (what the shipped reviewer decides) -- recounted here from the scores themselves
    main_scores = {s["text_sha"][:20]: s["scores"]["not_ok"] for s in scores if s["fold"] == "main"}
    prompted_scores = {
        c["id"]: (0.5 if i == 0 else 0.9 if c["label"] == "unsafe" else 0.1) for i, c in enumerate(chosen)
    }
    sent_back = {
        c["id"]
        for c in chosen
        if head.stacked(main_scores[c["id"]], prompted_scores[c["id"]]) >= stack["threshold"]["value"]
    }
    unsafe = {c["id"] for c in chosen if c["label"] == "unsafe"}
    decision = stacked["overall"]["stacked_split_decision"]
    assert decision["recall"] == round(len(sent_back & unsafe) / len(unsafe), 4)
    assert decision["fpr"] == round(len(sent_back - unsafe) / (len(chosen) - len(unsafe)), 4)
    assert "stacked_left_out_decision" in stacked["overall"]
    # from heads that never saw the row's source: the category heads too
    harmless_dev = [s for s in scores if s["fold"] == "cross-source-dev" and not s["harmful"]]
    assert set(stack["proposed_category_thresholds"]) == set(head.outputs) - {"not_ok"}
    harmless_main = [s for s in scores if s["fold"] == "main" and s["part"] == "dev" and not s["harmful"]]
    for name, proposed in stack["proposed_category_thresholds"].items():
        # the stricter of the two dev readings: at most 1% of either fold's harmless dev rows reach it
        for fold, rows in (("cross-source dev", harmless_dev), ("split dev (sources seen)", harmless_main)):
            scored = [s["scores"][name] for s in rows if name in s["scores"]]  # a fold may lack a category
            assert sum(v >= proposed["threshold"] for v in scored) <= 0.01 * len(scored)
            assert proposed["by_fold"][fold] <= proposed["threshold"]
        chosen_fold = harmless_dev if proposed["from"] == "cross-source dev" else harmless_main
        assert proposed["harmless_dev_rows"] == sum(name in s["scores"] for s in chosen_fold) > 0
        assert proposed["threshold"] == max(proposed["by_fold"].values())
    # The head alone (no prompted pass): its threshold by the same rule on the cross-source dev scores; written
    # into the card, it replaces the combination, so the reviewer decides on the head's own score.
    alone = stacked["alone"]
    dev_ids = [c["id"] for c in dev_chosen if c["id"] in dev_scored]
    assert alone["fitted_on_dev_rows"] == len(dev_ids) and 0 < alone["threshold"]["value"] <= 1
    cut = alone["threshold"]["value"]
    sent_back = {c["id"] for c in chosen if main_scores[c["id"]] >= cut}
    assert stacked["overall"]["head_test_decision"]["recall"] == round(len(sent_back & unsafe) / len(unsafe), 4)
    both = _run("compare", *common, *args, "--dev-sample", str(dev_sample), "--stack-into", "--alone-into")
    assert "choose one" in _one_error_line(both)
    assert _run("compare", *common, *args, "--dev-sample", str(dev_sample), "--alone-into").exit_code == 0
    head = load_head(out, model_sha256=card["model"]["sha256"], prompt_sha256=card["prompt"]["sha256"])
    assert head.stack is None and head.card["alone"]["threshold"] == alone["threshold"]
    assert set(head.card["alone"]["proposed_category_thresholds"]) == set(head.outputs) - {"not_ok"}
    missing = _run("compare", *common, "--eval", str(tmp_path / "none"), "--sample", str(sample), "--head", str(out))
    assert "--reviewer-only" in _one_error_line(missing)


def test_a_source_sampled_on_its_own_joins_the_comparison_without_changing_the_others(manifest, tmp_path):
    """A source added later gets its own sample and eval run (`compare-sample --source`); `compare` takes both
    pairs and joins the same rows a single sample of every source would have had for that source."""
    import json

    path, rows = manifest
    cache_features(tmp_path / "cache", rows)
    out = tmp_path / "head.npz"
    common = ["--manifest", str(path), "--cache", str(tmp_path / "cache"), "--layers", "2,5"]
    assert _run("train", *common, "--out", str(out), "--loso").exit_code == 0
    sources = sorted({r.row.source for r in rows if r.part == "test"})  # the sources a test sample can have
    new, old = sources[0], sources[1:]

    def sample(name, *only):
        target = tmp_path / f"{name}.jsonl"
        flags = [x for s in only for x in ("--source", s)]
        result = _run("compare-sample", "--manifest", str(path), "--per-source", "4", *flags, "--out", str(target))
        assert result.exit_code == 0, result.output
        chosen = [json.loads(x) for x in target.read_text().splitlines()]
        run = tmp_path / f"eval-{name}"
        run.mkdir()
        with (run / "results.jsonl").open("w") as fh:
            for c in chosen:
                unsafe = c["label"] == "unsafe"
                line = {"id": c["id"], "status": "ok", "decision": "revise" if unsafe else "approve"}
                line.update(score=0.7 if unsafe else 0.2, seconds=1.0, prompt_tokens=500, completion_tokens=0)
                fh.write(json.dumps(line) + "\n")
        return target, run, chosen

    old_sample, old_run, old_chosen = sample("old", *old)
    new_sample, new_run, new_chosen = sample("new", new)
    assert {c["source"] for c in new_chosen} == {new} and new not in {c["source"] for c in old_chosen}
    pairs = ["--sample", str(old_sample), "--eval", str(old_run), "--sample", str(new_sample), "--eval", str(new_run)]
    result = _run("compare", *common, *pairs, "--head", str(out), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["joined"] == len(old_chosen) + len(new_chosen) and set(report["by_source"]) == set(sources)
    alone = json.loads(
        _run(
            "compare", *common, "--sample", str(old_sample), "--eval", str(old_run), "--head", str(out), "--json"
        ).stdout
    )
    assert alone["by_source"] == {s: f for s, f in report["by_source"].items() if s != new}
    unpaired = _run("compare", *common, "--sample", str(old_sample), *pairs[2:6], "--head", str(out))
    assert "one eval run for each sample" in _one_error_line(unpaired)
    assert "--source nosuch" in _one_error_line(
        _run("compare-sample", "--manifest", str(path), "--source", "nosuch", "--out", str(tmp_path / "x.jsonl"))
    )
