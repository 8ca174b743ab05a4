"""Crashes and signals, for real: processes killed with SIGKILL at random moments, stopped with SIGTERM.
Transcripts stay readable and intact up to their last record, unfinished ones are reported incomplete
(never tampered), and a resumed eval finishes the rest without redoing finished items."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time

import pytest
import yaml

from chaperone.audit.transcript import read_records, verify
from chaperone.eval.store import RunFolder
from tests.support.eval_fakes import models
from tests.support.projects import REPO, run_cli


def start(root, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(REPO / "run.py"), "--project", str(root), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def all_transcripts_sound(folder) -> tuple[int, int]:
    """Every transcript parses and its chain holds; returns (complete, incomplete)."""
    complete = incomplete = 0
    for path in folder.glob("*.jsonl"):
        records = list(read_records(path))  # parses up to the last complete record
        check = verify(path)
        assert check.intact, check.describe()  # never reported as tampered
        assert records and records[0]["type"] == "header"
        complete += check.complete
        incomplete += not check.complete
    return complete, incomplete


def write_prompts(path, n):
    path.write_text("id,prompt,label\n" + "".join(f"q{i},Question number {i}?,safe\n" for i in range(n)))


def test_sigkill_at_random_moments_during_an_eval_then_resume(world, project_factory, tmp_path):
    root = project_factory(models(world.server.base_url), assistant_model="remote", reviewer_model="remote")
    n = 20
    write_prompts(tmp_path / "p.csv", n)
    world.delay = 0.08
    out = tmp_path / "run"
    rng = random.Random(5)
    first = ["eval", str(tmp_path / "p.csv"), "--out", str(out), "--judge-model", "remote", "--concurrency", "2"]
    resume = ["eval", "--resume", str(out), "--judge-model", "remote", "--concurrency", "2"]
    kills = 0
    for attempt in range(5):
        done_before = RunFolder(out).done() if (out / "plan.json").exists() else set()
        world.calls.clear()
        proc = start(root, *(first if attempt == 0 else resume))
        wait_for(lambda proc=proc: world.calls or proc.poll() is not None)  # under way (start-up time varies)
        time.sleep(rng.uniform(0.1, 1.2))
        # Whatever a resumed process drafts, it never drafts an item that was already finished.
        drafted = {c.removeprefix("draft:") for c in world.calls if c.startswith("draft:")}
        assert not {i for i in done_before if f"Question number {i[1:]}?" in drafted}
        if proc.poll() is not None:
            break
        proc.kill()  # SIGKILL: no cleanup at all
        proc.wait()
        kills += 1
        all_transcripts_sound(tmp_path / "transcripts")
    done_before = RunFolder(out).done()
    world.calls.clear()
    proc = start(root, *resume)
    proc.communicate(timeout=300)
    assert proc.returncode == 0
    assert kills >= 3
    drafted = {c.removeprefix("draft:") for c in world.calls if c.startswith("draft:")}
    assert not {i for i in done_before if f"Question number {i[1:]}?" in drafted}
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.endswith("}")]
    ok = [r["id"] for r in rows if r.get("status") == "ok"]
    assert sorted(ok) == sorted(f"q{i}" for i in range(n)) and len(ok) == len(set(ok))  # each finished once
    complete, incomplete = all_transcripts_sound(tmp_path / "transcripts")
    # Each finished item's two conversations are complete; a conversation killed mid-way stays incomplete,
    # and an item killed after its conversations but before its row was written is run again whole.
    assert complete >= 2 * n and incomplete <= kills * 2
    for row in rows:
        if row.get("status") == "ok":
            for arm in ("bare", "guarded"):
                assert verify(row["arms"][arm]["transcript"]).complete
    report = json.loads((out / "report.json").read_text())
    assert report["items"] == n and report["missing"] == 0


def test_sigkill_during_scenario_runs_leaves_sound_transcripts(world, project_factory, tmp_path):
    root = project_factory(models(world.server.base_url), assistant_model="remote", reviewer_model="remote")
    for n in range(3):
        (root / "scenarios" / f"s{n}.yaml").write_text(
            yaml.safe_dump({"name": f"s{n}", "turns": [{"user": f"Question {n}.{t}?"} for t in range(3)]})
        )
    world.delay = 0.05
    rng = random.Random(11)
    for _ in range(5):
        world.calls.clear()
        proc = start(root, "scenario", str(root / "scenarios"))
        wait_for(lambda proc=proc: world.calls or proc.poll() is not None)  # the run is under way (start-up varies)
        time.sleep(rng.uniform(0.0, 1.5))
        proc.kill()
        proc.wait()
        all_transcripts_sound(tmp_path / "transcripts")
    listed = run_cli("--project", str(root), "review", "verify")
    assert listed.returncode == 0, listed.stdout  # incomplete is not tampering
    assert "TAMPERED" not in listed.stdout


@pytest.mark.parametrize("command", ["scenario", "eval"])
def test_sigterm_closes_transcripts_as_interrupted(world, project_factory, tmp_path, command):
    root = project_factory(models(world.server.base_url), assistant_model="remote", reviewer_model="remote")
    (root / "scenarios" / "s.yaml").write_text(yaml.safe_dump({"name": "s", "turns": [{"user": "Slow one?"}]}))
    write_prompts(tmp_path / "p.csv", 3)
    world.delay = 0.4
    args = (
        ["scenario", str(root / "scenarios")]
        if command == "scenario"
        else ["eval", str(tmp_path / "p.csv"), "--out", str(tmp_path / "run"), "--judge-model", "remote"]
    )
    proc = start(root, *args)
    wait_for(lambda: any(c.startswith("draft:") for c in world.calls))
    proc.send_signal(signal.SIGTERM)
    _stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr and "interrupted" in stderr
    closings = [list(read_records(p))[-1] for p in (tmp_path / "transcripts").glob("*.jsonl")]
    assert closings and all(c["type"] == "closing" for c in closings)
    assert "interrupted" in {c["outcome"] for c in closings}
