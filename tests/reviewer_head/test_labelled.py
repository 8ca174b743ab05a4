"""A deployer's own labelled answers join the head's data as one source, checked line by line."""

import json
import subprocess
import sys

import pytest

from chaperone.reviewer_head import data
from chaperone.reviewer_head.data import read_labelled
from chaperone.reviewer_head.labelled import LabelledDataError


def _write(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


def _answers(n):
    return [
        {
            "request": f"question {i // 2}",
            "answer": f"answer {i}",
            "harmful": i % 2 == 0,
            "category": "crime" if i % 2 == 0 else None,
            "group": f"conv-{i // 2}",
        }
        for i in range(n)
    ]


def test_own_answers_become_one_source_whose_groups_keep_their_part(tmp_path):
    rows = list(read_labelled(_write(tmp_path / "support-bot.jsonl", _answers(40))))
    assert {r.source for r in rows} == {"own:support-bot"} and len(rows) == 40
    assert sum(r.harmful for r in rows) == 20 and {r.category for r in rows if r.harmful} == {"crime"}
    assert all(r.label_by == "deployer" for r in rows)
    parts = {}
    for r in data.split(rows, seed=0):
        parts.setdefault(r.row.group, set()).add(r.part)
    assert all(len(p) == 1 for p in parts.values())  # both answers of a conversation share a part


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"request": "q", "answer": "a", "harmful": "maybe"}', "field 'harmful'"),
        ('{"request": "q", "answer": "a", "harmful": true, "category": "rudeness"}', "field 'category'"),
        ('{"request": "q", "harmful": true}', "field 'answer'"),
        ('{"request": "q", "answer": "a", "harmful": tru', "not a JSON object"),
        ("[1, 2]", "not a JSON object"),
    ],
)
def test_a_bad_line_names_the_file_line_and_field_and_nothing_is_read(tmp_path, line, expected):
    path = _write(tmp_path / "own.jsonl", [*_answers(3), line])
    with pytest.raises(LabelledDataError) as err:
        list(read_labelled(path))
    assert str(err.value).startswith(f"{path}:4: ") and expected in str(err.value)


def test_the_data_command_adds_own_answers_to_a_new_manifest_with_their_own_fold(fake_shared, tmp_path):
    own = _write(tmp_path / "helpdesk.jsonl", _answers(30))
    rows, summary = data.build(0, labelled=(own,), **fake_shared)
    assert "loso:own:helpdesk" in summary["folds"] and summary["licences"]["own:helpdesk"] == "the deployer's own"
    assert sum(r.row.source == "own:helpdesk" for r in rows) == 30  # uncapped
    bad = _write(tmp_path / "bad.jsonl", ['{"answer": "a", "harmful": 1.5}'])
    out = tmp_path / "m.jsonl.gz"
    cmd = [sys.executable, "-m", "chaperone.reviewer_head.data", "--with-labelled", str(bad), "--out", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 1 and f"error: {bad}:1: field 'harmful'" in result.stderr
    assert "Traceback" not in result.stderr and not out.exists()
    same = [sys.executable, "-m", "chaperone.reviewer_head.data", "--with-labelled", str(own)]
    refused = subprocess.run(same, capture_output=True, text=True)
    assert refused.returncode == 2 and "give --out a new name" in refused.stderr


def test_a_missing_shared_folder_or_file_is_one_line_naming_it(fake_shared, tmp_path):
    own = _write(tmp_path / "helpdesk.jsonl", _answers(3))
    out = tmp_path / "m.jsonl.gz"
    missing = tmp_path / "no-such-folder"
    cmd = [sys.executable, "-m", "chaperone.reviewer_head.data", "--with-labelled", str(own), "--out", str(out)]
    result = subprocess.run([*cmd, "--shared", str(missing)], capture_output=True, text=True)
    assert result.returncode == 1 and f"error: {missing}: the shared datasets folder is not there" in result.stderr
    assert "Traceback" not in result.stderr and not out.exists()
    empty = tmp_path / "empty-shared"
    (empty / "reviewer").mkdir(parents=True)
    with pytest.raises(data.ChaperoneError, match="a training data file is missing"):
        data.build(0, shared=empty)
