"""Wrapped copies of training rows: same label, source, group and part; the draft wrapped; seeded."""

import gzip
import re

import pytest

from chaperone.reviewer_head import data, draft_wrappers
from chaperone.reviewer_head.draft_wrappers import KINDS, WRAPPERS, wrapped_rows


def _rows(n: int = 600) -> list[data.SplitRow]:
    out = []
    for i in range(n):
        row = data.Row(
            source=("alpha", "beta")[i % 2],
            id=f"r{i}",
            request=f"request {i}?",
            draft=f"First sentence of answer {i}. Second sentence! Third one?",
            harmful=i % 3 == 0,
            category="crime" if i % 3 == 0 else None,
            label_by="human",
            licence="CC0",
            group=f"g{i // 2}",
        )
        out.append(data.SplitRow(row, ("train", "dev", "test")[i % 5 % 3]))
    return out


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text))


def test_a_wrapped_copy_keeps_everything_but_the_draft_and_contains_the_answer():
    rows = _rows()
    by_id = {r.row.id: r for r in rows}
    wrapped = wrapped_rows(rows, 0.3, seed=0)
    assert wrapped
    for w in wrapped:
        base = by_id[w.row.id.split("~")[0]]
        assert w.part == base.part and w.part in ("train", "dev")
        for field in ("source", "request", "harmful", "category", "label_by", "group"):
            assert getattr(w.row, field) == getattr(base.row, field)
        assert w.row.draft != base.row.draft and w.row.text_sha != base.row.text_sha
        assert _words(base.row.draft) <= _words(w.row.draft)  # markup may re-lay the text, never drop it
        assert w.row.licence.startswith(base.row.licence)


def test_the_choice_is_fixed_by_seed_and_rate_and_every_template_is_reachable():
    rows = _rows()
    first = [(w.row.id, w.row.draft) for w in wrapped_rows(rows, 0.3, seed=0)]
    assert first == [(w.row.id, w.row.draft) for w in wrapped_rows(rows, 0.3, seed=0)]
    assert first != [(w.row.id, w.row.draft) for w in wrapped_rows(rows, 0.3, seed=1)]
    train_dev = [r for r in rows if r.part != "test"]
    everything = wrapped_rows(rows, 1.0, seed=0)
    assert len(everything) == len(train_dev)
    used = {w.row.id.split("~")[1] for w in everything}
    assert used == {f"{kind}-{i}" for kind in KINDS for i in range(len(WRAPPERS[kind]))}
    # Both labels at the rate asked (within sampling noise on 480 rows), so the wrapper carries no label.
    some = wrapped_rows(rows, 0.3, seed=0)
    share = sum(w.row.harmful for w in some) / len(some)
    base_share = sum(r.row.harmful for r in train_dev) / len(train_dev)
    assert abs(len(some) / len(train_dev) - 0.3) < 0.07 and abs(share - base_share) < 0.1


def test_a_bad_rate_is_refused():
    with pytest.raises(ValueError, match="rate"):
        wrapped_rows(_rows(), 0, 0)


def test_the_command_writes_a_new_manifest_and_its_row_list(tmp_path, capsys):
    rows = _rows(120)
    source = tmp_path / "split.jsonl.gz"
    data.write_manifest(rows, {"seed": 0}, source)
    listed = tmp_path / "listed.rows.txt"
    listed.write_text("".join(r.row.text_sha + "\n" for r in rows[:80]))
    out = tmp_path / "split-wrapped.jsonl.gz"
    draft_wrappers.main(["--manifest", str(source), "--rows", str(listed), "--rate", "0.5", "--out", str(out)])
    new, summary = data.read_manifest(out)  # checks every row's text_sha
    added = [r for r in new if "~" in r.row.id]
    assert len(new) == len(rows) + len(added) and summary["wrapped"]["rows"] == len(added) > 0
    assert {w.row.id.split("~")[0] for w in added} <= {r.row.id for r in rows[:80]}  # only listed rows are wrapped
    names = gzip.decompress((tmp_path / "split-wrapped.rows.txt.gz").read_bytes()).decode().split()
    assert set(names) == {r.row.text_sha for r in rows[:80]} | {r.row.text_sha for r in added}
    with pytest.raises(SystemExit):
        draft_wrappers.main(["--manifest", str(source), "--out", str(source)])
    with pytest.raises(SystemExit, match="rate"):
        draft_wrappers.main(["--manifest", str(source), "--rate", "2", "--out", str(tmp_path / "x.jsonl.gz")])
