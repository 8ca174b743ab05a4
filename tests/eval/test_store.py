"""The run folder: rows survive a crash, a torn line is skipped, and appends after it stay readable."""

import json

from chaperone.eval.rows import FailedRow, ReviewerRow
from chaperone.eval.store import Plan, RunFolder

HEAD = {"label": "safe", "type": "", "category": "", "prompt": "q", "shard": (1, 1)}


def ok(item_id):
    verdict = {"decision": "approve", "readable": True, "raw": "", "prompt_tokens": 1, "completion_tokens": 1}
    return ReviewerRow(id=item_id, **HEAD, **verdict, seconds=0.1, model="m")


def failed(item_id):
    return FailedRow(id=item_id, **HEAD, error="boom")


def test_results_skip_torn_lines_and_keep_the_last_row_per_item(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.create(Plan("r", "ab", "src", "sha", {}, ["a", "b", "c"], {}))
    folder.append(failed("a"))
    folder.append(ok("b"))
    with folder.results_path.open("a") as fh:
        fh.write('{"id": "c", "stat')  # a crash mid-write
    assert folder.done() == {"b"}
    folder.append(ok("a"))
    folder.append(ok("c"))
    assert folder.done() == {"a", "b", "c"}
    lines = folder.results_path.read_text().splitlines()
    assert lines[2] == '{"id": "c", "stat' and json.loads(lines[3])["id"] == "a"


def test_plan_key_ignores_the_shard_only():
    a = Plan("r1", "ab", "src", "sha", {"seed": 1}, ["1", "2"], {"policy": None}, (1, 2))
    b = Plan("r2", "ab", "src", "sha", {"seed": 1}, ["1", "2"], {"policy": None}, (2, 2))
    c = Plan("r1", "ab", "src", "sha", {"seed": 2}, ["1", "2"], {"policy": None}, (1, 2))
    assert a.key == b.key != c.key
    assert Plan.from_dict(a.as_dict()).key == a.key
