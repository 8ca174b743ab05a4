"""The rows, the categories, the split: deterministic by seed, by group, written before any result."""

from collections import defaultdict

from chaperone.reviewer_head import data


def _build(fake_shared, seed=0, caps=None):
    return data.build(seed, caps=caps or {}, **fake_shared)


def test_rows_are_read_mapped_and_deduplicated(fake_shared):
    rows, summary = _build(fake_shared)
    by_id = {r.row.id: r.row for r in rows}
    assert "dia-null" not in by_id  # no usable label
    assert summary["dropped"]["duplicates"] >= 1  # "reply  0" is "reply 0"
    assert "jbb-1" in by_id and by_id["jbb-1"].source == "jbb"  # data/'s jbb rows come from jbb_responses
    assert by_id["jbb-1"].category == "privacy" and by_id["tox-0"].category == "hate_bias"
    assert by_id["gptfuzz-0-0"].category == "unspecified" and by_id["tqa-0-0"].category == "misinformation"
    assert by_id["xstest-3"].category is None and not by_id["xstest-3"].harmful
    assert all(r.row.category in (None, *data.CATEGORIES) for r in rows)
    assert {r.row.source for r in rows} == set(summary["licences"])


def test_split_is_fixed_by_seed_and_never_splits_a_group(fake_shared):
    first, _ = _build(fake_shared, seed=0)
    again, _ = _build(fake_shared, seed=0)
    other, _ = _build(fake_shared, seed=1)
    assert [(r.row.id, r.part) for r in first] == [(r.row.id, r.part) for r in again]
    assert [r.part for r in first] != [r.part for r in other]
    parts = defaultdict(set)
    for r in first:
        parts[r.row.group].add(r.part)
    assert all(len(p) == 1 for p in parts.values())
    # a question's answers stay together, GPTFuzz's and JailbreakBench's answers to the same question too
    group = next(x.row.group for x in first if x.row.request == "Question number 3?")
    q = {r.part for r in first if r.row.group == group}
    assert {r.row.source for r in first if r.row.group == group} == {"gptfuzz", "jbb"}
    assert len(q) == 1
    assert {r.part for r in first} == {"train", "dev", "test"}


def test_a_part_depends_on_the_group_alone_not_on_the_other_rows(fake_shared):
    rows, _ = _build(fake_shared)
    fewer = data.split([r.row for r in rows if r.row.source != "gptfuzz"], 0)
    parts = {r.row.id: r.part for r in rows}
    assert all(parts[r.row.id] == r.part for r in fewer)


def test_caps_keep_both_labels(fake_shared):
    _rows, summary = _build(fake_shared, caps={"gptfuzz": 20, "truthfulqa": 10})
    counts = summary["counts"]
    assert counts["gptfuzz"]["harmful"] == 10 and counts["gptfuzz"]["not harmful"] == 10
    assert counts["truthfulqa"]["harmful"] + counts["truthfulqa"]["not harmful"] == 10


def test_manifest_round_trips_and_loso_folds_leave_the_source_out(fake_shared, tmp_path):
    rows, summary = _build(fake_shared)
    path = tmp_path / "split.jsonl"
    data.write_manifest(rows, summary, path)
    back, summary_back = data.read_manifest(path)
    assert [(r.row, r.part) for r in back] == [(r.row, r.part) for r in rows]
    assert "loso:truthfulqa" in summary_back["folds"]
    fold = data.fold_parts(back, "loso:truthfulqa")
    assert fold["test"] and all(r.row.source == "truthfulqa" for r in fold["test"])
    assert not any(r.row.source == "truthfulqa" for r in fold["train"] + fold["dev"])
    assert all(r.part == "train" for r in fold["train"])


def test_a_gzipped_manifest_is_byte_for_byte_reproducible(fake_shared, tmp_path):
    rows, summary = _build(fake_shared)
    a, b = tmp_path / "a.jsonl.gz", tmp_path / "b.jsonl.gz"
    data.write_manifest(rows, summary, a)
    data.write_manifest(rows, summary, b)
    assert a.read_bytes() == b.read_bytes()
    assert [r.part for r in data.read_manifest(a)[0]] == [r.part for r in rows]
