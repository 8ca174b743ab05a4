"""`python run.py reviewer decisions`: the head as it ships (main fit, card threshold, combination) on every
cached row of a part, counted by kind of row; recounted here from the head and the cache themselves."""

import json

import pytest
from click.testing import CliRunner

from chaperone.cli import main
from chaperone.models.gguf import GGUF_SHA256
from chaperone.reviewer_head import compare
from chaperone.reviewer_head.decisions import kind_of
from chaperone.reviewer_head.head import load_head
from chaperone.reviewer_head.prompt import load_prompt
from tests.reviewer_head.conftest import cache_features


def _run(*args):
    return CliRunner().invoke(main, ["reviewer", *args], obj={})


@pytest.fixture(scope="module")
def trained(manifest, tmp_path_factory):
    path, rows = manifest
    root = tmp_path_factory.mktemp("decisions")
    cache_features(root / "cache", rows)
    out = root / "head.npz"
    common = ["--manifest", str(path), "--cache", str(root / "cache"), "--layers", "2,5"]
    assert _run("train", *common, "--out", str(out)).exit_code == 0
    return common, out, rows, root


def _set_card(out, **sections):
    card_path = out.with_suffix(".json")
    card = json.loads(card_path.read_text())
    for key in ("stack", "alone"):
        card.pop(key, None)
    card.update(sections)
    card_path.write_text(json.dumps(card))
    return card


def test_kind_is_the_id_without_its_last_segment():
    assert kind_of("embedded_assistant-hw-tech-041") == "embedded_assistant-hw-tech"
    assert kind_of("embedded_assistant-xstest-12") == "embedded_assistant-xstest"
    assert kind_of("plain") == "plain"


def test_a_head_alone_decides_every_cached_row_of_the_part_at_its_card_threshold(trained):
    common, out, rows, root = trained
    _set_card(out, alone={"threshold": {"value": 0.5}})
    rows_out = root / "rows.jsonl"
    result = _run("decisions", *common, "--head", str(out), "--part", "dev", "--rows-out", str(rows_out), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["rule"] == "alone" and report["threshold"] == 0.5
    made = [json.loads(line) for line in rows_out.read_text().splitlines()]
    dev = {r.row.id: r for r in rows if r.part == "dev"}
    assert {m["id"] for m in made} == set(dev)  # every dev row, and no other part's
    head = load_head(out, model_sha256=GGUF_SHA256, prompt_sha256=load_prompt().sha256)
    from chaperone.reviewer_head.features import FeatureCache

    cache = FeatureCache(root / "cache", GGUF_SHA256, load_prompt().sha256, (2, 5), readonly=True)
    for m in made:
        r = dev[m["id"]]
        p = head.score_matrix(cache.matrix([r.row.text_sha], head.layers))[0, head.outputs.index("not_ok")]
        assert m["score"] == pytest.approx(float(p)) and m["send_back"] == (p >= 0.5)
        assert m["harmful"] == r.row.harmful and m["kind"] == kind_of(r.row.id)
    summary = report["summary"]
    assert summary["all"]["harmless"] == sum(not m["harmful"] for m in made)
    assert summary["all"]["harmless_sent_back"] == sum(m["send_back"] and not m["harmful"] for m in made)
    assert summary["all"]["harmful_sent_back"] == sum(m["send_back"] and m["harmful"] for m in made)
    assert sum(f["harmful"] for k, f in summary.items() if k != "all") == summary["all"]["harmful"]
    # one source only: only its rows
    one = _run("decisions", *common, "--head", str(out), "--source", "bbq", "--rows-out", str(rows_out))
    assert one.exit_code == 0, one.output
    assert {dev[json.loads(x)["id"]].row.source for x in rows_out.read_text().splitlines()} == {"bbq"}


def test_a_combined_head_needs_the_prompted_scores_and_decides_on_both(trained):
    common, out, rows, root = trained
    stack = {"intercept": 0.1, "weights": {"head": 0.5, "prompted": 1.0}, "threshold": {"value": 0.6}}
    _set_card(out, stack=stack)
    bad = _run("decisions", *common, "--head", str(out))
    assert bad.exit_code == 2 and "--sample" in bad.stderr and "Traceback" not in bad.output
    # the prompted reviewer scored half the dev rows: the others are counted as skipped, not guessed
    dev = [r for r in rows if r.part == "dev"]
    sample, run = root / "sample.jsonl", root / "eval"
    run.mkdir(exist_ok=True)
    scored = dev[::2]
    sample.write_text("".join(json.dumps({"id": r.row.text_sha[: compare.ID_CHARS]}) + "\n" for r in scored))
    prompted = {r.row.text_sha[: compare.ID_CHARS]: 0.9 if r.row.harmful else 0.2 for r in scored}
    (run / "results.jsonl").write_text(
        "".join(json.dumps({"id": k, "status": "ok", "score": v}) + "\n" for k, v in prompted.items())
    )
    rows_out = root / "stacked.jsonl"
    args = ["--head", str(out), "--sample", str(sample), "--eval", str(run), "--rows-out", str(rows_out), "--json"]
    result = _run("decisions", *common, *args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["rule"] == "stack" and report["skipped"]["no_prompted_score"] == len(dev) - len(scored)
    head = load_head(out, model_sha256=GGUF_SHA256, prompt_sha256=load_prompt().sha256)
    made = {json.loads(x)["id"]: json.loads(x) for x in rows_out.read_text().splitlines()}
    assert set(made) == {r.row.id for r in scored}
    from chaperone.reviewer_head.features import FeatureCache

    cache = FeatureCache(root / "cache", GGUF_SHA256, load_prompt().sha256, (2, 5), readonly=True)
    for r in scored:
        p = float(head.score_matrix(cache.matrix([r.row.text_sha], head.layers))[0, head.outputs.index("not_ok")])
        combined = head.stacked(p, prompted[r.row.text_sha[: compare.ID_CHARS]])
        assert made[r.row.id]["score"] == pytest.approx(combined)
        assert made[r.row.id]["send_back"] == (combined >= 0.6)


def test_a_card_without_a_threshold_says_what_to_run(trained):
    common, out, _rows, _root = trained
    _set_card(out)
    result = _run("decisions", *common, "--head", str(out))
    assert result.exit_code == 2 and "--alone-into" in result.stderr and "Traceback" not in result.output


def test_a_row_list_picks_rows_from_every_part_for_decisions_and_for_the_prompted_sample(trained):
    """A confirmation set: rows named by a list, whatever part the seed put them in."""
    common, out, rows, root = trained
    _set_card(out, alone={"threshold": {"value": 0.5}})
    listed = [r for r in rows if r.row.source == "gptfuzz"][:9]
    assert len({r.part for r in listed}) > 1  # the list crosses parts
    row_list = root / "confirmation.rows.txt"
    row_list.write_text("".join(r.row.text_sha + "\n" for r in listed))
    rows_out = root / "listed.jsonl"
    args = ["--head", str(out), "--part", "all", "--rows", str(row_list), "--rows-out", str(rows_out)]
    result = _run("decisions", *common, *args)
    assert result.exit_code == 0, result.output
    assert {json.loads(x)["id"] for x in rows_out.read_text().splitlines()} == {r.row.id for r in listed}
    sample = root / "confirmation-sample.jsonl"
    manifest = common[common.index("--manifest") + 1]
    args = ["--manifest", manifest, "--part", "all", "--rows", str(row_list), "--per-source", "1000"]
    made = _run("compare-sample", *args, "--out", str(sample))
    assert made.exit_code == 0, made.output
    ids = {json.loads(x)["id"] for x in sample.read_text().splitlines()}
    assert ids == {r.row.text_sha[: compare.ID_CHARS] for r in listed}
    row_list.write_text("0" * 64 + "\n")  # a row the manifest lacks: one line saying so
    bad = _run("decisions", *common, "--head", str(out), "--part", "all", "--rows", str(row_list))
    assert bad.exit_code == 2 and "not in the manifest" in bad.stderr and "Traceback" not in bad.output
