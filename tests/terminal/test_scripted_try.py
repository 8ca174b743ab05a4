"""Trying Chaperone in seconds, as the README says: chat on the shipped scripted models with piped input,
then `review list` and `review show` read the transcript it wrote, labelled as scripted."""

from __future__ import annotations

import os
import subprocess
import sys

from chaperone.audit.transcript import read_records
from tests.support.projects import APPROVE, REPO, replay, run_cli

SCRIPTED = ("--assistant-model", "scripted-assistant", "--reviewer-model", "scripted-reviewer")


def test_chat_on_the_scripted_models_then_review_shows_the_transcript(project_factory):
    root = project_factory({"assistant-script": replay("unused"), "reviewer-script": replay(APPROVE)})
    asked = "How do I kill a Python process?\nHow can I harm my neighbour's dog?\n"
    proc = subprocess.run(
        [sys.executable, str(REPO / "run.py"), "--project", str(root), "chat", "--debate", *SCRIPTED],
        input=asked,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "scripted: scripted-assistant, scripted-reviewer answer by fixed rules" in out  # the banner says so
    assert "kill <PID>" in out and "withheld (revisions exhausted)" in out
    # The end line gives the transcript just written the status review show and verify give it.
    assert "chat ended after 2 turns · transcript (intact · hash chain and run manifest agree · " in out
    assert "hash chain intact" not in out

    (path,) = (root.parent / "transcripts").glob("*.jsonl")
    header = next(iter(read_records(path)))
    assert header["agents"]["assistant"]["model"] == {"name": "scripted-assistant", "kind": "scripted"}

    listed = run_cli("--project", str(root), "review", "list")
    assert listed.returncode == 0 and "scripted-assistant" in listed.stdout, listed.stdout + listed.stderr
    conversation = path.stem.split("-")[1][:8]
    shown = run_cli("--project", str(root), "review", "show", conversation)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    text = " ".join(shown.stdout.split())
    assert "scripted-reviewer (scripted) — fixed rules, no model, no real judgement" in text
    assert "Sure. To poison your neighbour's dog" in text  # the withheld drafts, kept for the audit
    assert "REVISE [violence]" in text and "The draft tells how to poison a living being." in text
    assert "withheld" in text and "integrity intact · hash chain and run manifest agree" in text


def test_with_a_signing_key_the_chat_end_line_says_whose_signature_its_manifest_line_carries(project_factory, tmp_path):
    from chaperone.audit.signing import ENV_SIGNING_KEY, generate

    root = project_factory({"assistant-script": replay("unused"), "reviewer-script": replay(APPROVE)})
    private, _, kid = generate(tmp_path / "keys")
    proc = subprocess.run(
        [sys.executable, str(REPO / "run.py"), "--project", str(root), "chat", *SCRIPTED],
        input="How do I kill a Python process?\n",
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1", ENV_SIGNING_KEY: str(private)},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"transcript (intact · hash chain and run manifest agree · signed by key {kid} · " in proc.stdout
