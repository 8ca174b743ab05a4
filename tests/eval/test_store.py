"""The run folder: rows survive a crash, a torn line is skipped, and appends after it stay readable."""

import json

from chaperone.eval.store import Plan, RunFolder


def test_results_skip_torn_lines_and_keep_the_last_row_per_item(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.create(Plan("r", "ab", "src", "sha", {}, ["a", "b", "c"], {}))
    folder.append({"id": "a", "status": "error"})
    folder.append({"id": "b", "status": "ok"})
    with folder.results_path.open("a") as fh:
        fh.write('{"id": "c", "stat')  # a crash mid-write
    assert folder.done() == {"b"}
    folder.append({"id": "a", "status": "ok"})
    folder.append({"id": "c", "status": "ok"})
    assert folder.done() == {"a", "b", "c"}
    lines = folder.results_path.read_text().splitlines()
    assert lines[2] == '{"id": "c", "stat' and json.loads(lines[3])["id"] == "a"


def test_plan_key_ignores_the_shard_only():
    a = Plan("r1", "ab", "src", "sha", {"seed": 1}, ["1", "2"], {"policy": None}, (1, 2))
    b = Plan("r2", "ab", "src", "sha", {"seed": 1}, ["1", "2"], {"policy": None}, (2, 2))
    c = Plan("r1", "ab", "src", "sha", {"seed": 2}, ["1", "2"], {"policy": None}, (1, 2))
    assert a.key == b.key != c.key
    assert Plan.from_dict(a.as_dict()).key == a.key
