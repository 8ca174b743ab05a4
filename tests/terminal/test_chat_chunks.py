"""The terminal chat under a chunked-review policy, driven through its front door with piped input: approved
prefixes are printed as they are released, text sent back is marked withdrawn, and the revised answer follows."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support.chunked import REVISED, SAFE, chunked_project
from tests.support.projects import REPO


def chat(root, text: str, *flags: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(REPO / "run.py"), "--project", str(root), "chat", *flags],
        input=text,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_shown_text_sent_back_is_marked_withdrawn_and_the_revision_follows(project_factory):
    out = chat(chunked_project(project_factory), "Tell me about pets.\n")
    assert "chunked review: each part is shown once the reviewer approves it" in out  # the banner says so
    shown = out.index("assistant · shown as the reviewer approves it")
    first, second = out.index("Dogs are loyal friends.", shown), out.index("Cats are independent.", shown)
    withdrawn = out.index("✗ withdrawn: the text shown above is not the answer (the reviewer sent back chunk 3)")
    revised = out.index("Treat every animal kindly", withdrawn)
    assert first < second < withdrawn < revised
    assert "lethal" not in out  # the bad sentence was never shown, not even in the withdrawn part
    assert "✓ approved: the whole answer was reviewed, after 1 revision" in out[revised:]
    assert REVISED.startswith(SAFE)


def test_debate_mode_shows_each_chunk_verdict(project_factory):
    out = chat(chunked_project(project_factory), "Tell me about pets.\n", "--debate")
    assert "chunk 1 approve" in out and "chunk 3 REVISE" in out
    assert "No poisoning instructions." in out
    assert "stopped at chunk 3" in out


def test_a_whole_policy_prints_one_answer_panel_as_before(project_factory):
    out = chat(chunked_project(project_factory, streaming="whole"), "Tell me about pets.\n")
    assert "shown as the reviewer approves it" not in out and "withdrawn" not in out
    assert "chunked review" not in out
    assert "approved after 1 revision" in out
