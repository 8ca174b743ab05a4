"""Transcripts, logs and eval results are created readable by their owner only, whatever the umask."""

import os
import stat

import yaml

from tests.support.projects import APPROVE, replay, run_cli


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_run_writes_owner_only_files(project_factory, tmp_path):
    root = project_factory({"assistant-script": replay("Use `kill <PID>`."), "reviewer-script": replay(APPROVE)})
    (root / "scenarios" / "s.yaml").write_text(yaml.safe_dump({"name": "s", "turns": [{"user": "hi"}]}))
    old = os.umask(0o022)  # the usual umask: without care, files would be world-readable
    try:
        proc = run_cli("--project", str(root), "scenario", str(root / "scenarios"))
    finally:
        os.umask(old)
    assert proc.returncode == 0, proc.stderr
    (transcript,) = (tmp_path / "transcripts").glob("*.jsonl")
    assert mode(transcript) == 0o600 and mode(tmp_path / "transcripts") == 0o700
    assert mode(tmp_path / "logs" / "app.log") == 0o600 and mode(tmp_path / "logs") == 0o700


def test_eval_results_are_owner_only(tmp_path):
    from chaperone.eval.store import Plan, RunFolder

    old = os.umask(0o022)
    try:
        folder = RunFolder(tmp_path / "evals" / "run")
        folder.create(Plan("r", "ab", "s", "sha", {}, ["1"], {}))
        folder.append({"id": "1", "status": "ok"})
    finally:
        os.umask(old)
    assert mode(folder.path) == 0o700 and mode(folder.plan_path) == 0o600 and mode(folder.results_path) == 0o600
