"""The review tools on a transcript written under chunked review: every chunk verdict, what was shown while
the draft was written, what was withdrawn and where the draft stopped, in show, export (md, json, html),
list and stats; and the transcript verifies intact."""

from __future__ import annotations

import asyncio
import json

import pytest

from chaperone.audit.transcript import read_records
from chaperone.config.project import load_project
from chaperone.engine.choice import SessionChoice
from chaperone.engine.conversation import Conversation
from chaperone.models.pool import ModelPool
from chaperone.review.story_reader import build_story
from tests.support.chunked import SAFE, chunked_project
from tests.support.projects import run_cli


@pytest.fixture
def chunked_transcript(project_factory):
    root = chunked_project(project_factory)
    project = load_project(root)
    conv = Conversation(project, ModelPool(project.models, root / "config/models.yaml"), SessionChoice(), kind="chat")
    asyncio.run(conv.send("Tell me about pets."))
    conv.close()
    return root, conv


def test_the_story_holds_chunks_releases_withdrawal_and_the_stop(chunked_transcript):
    _, conv = chunked_transcript
    story = build_story(read_records(conv.transcript_path))
    [turn] = story.turns
    first, second = turn.rounds
    assert [(c.chunk, c.approved) for c in first.chunks] == [(1, True), (2, True), (3, False)]
    assert first.chunks[-1].critique == "No poisoning instructions." and first.chunks[-1].categories == ["violence"]
    assert first.released == len(SAFE.rstrip()) and first.withdrawn == SAFE.rstrip()
    assert first.draft.stopped_at_chunk == 3 and first.draft.tokens_saved > 0
    assert first.verdict.chunk == 3 and second.verdict.chunk is None and second.verdict.approved
    assert turn.delivered_released == second.released
    assert not story.notes and not turn.notes  # no record read as unknown
    assert story.streaming == "chunks (1-40 tokens)"


def test_show_export_list_and_stats(chunked_transcript):
    root, conv = chunked_transcript
    cid = conv.transcript.conversation_id[:12]
    show = run_cli("--project", str(root), "review", "show", cid)
    assert show.returncode == 0, show.stdout + show.stderr
    out = " ".join(show.stdout.split())
    assert "chunk 3 REVISE" in out and "chunk 1 approve" in out
    assert "withdrawn: 45 characters shown, taken back (the reviewer sent back chunk 3)" in out
    assert "stopped at chunk 3" in out and "chunk 3's verdict" in out
    assert "review chunks (1-40 tokens)" in out

    md = run_cli("--project", str(root), "review", "export", cid, "--format", "md", "-o", "-")
    assert md.returncode == 0 and "- chunk 3: **REVISE**" in md.stdout and "**Withdrawn**" in md.stdout
    assert "| review | chunks (1-40 tokens) |" in md.stdout
    html = run_cli("--project", str(root), "review", "export", cid, "--format", "html", "-o", "-")
    assert html.returncode == 0 and "chunk 3 <strong" in html.stdout and "Withdrawn ·" in html.stdout
    exported = json.loads(
        run_cli("--project", str(root), "review", "export", cid, "--format", "json", "-o", "-").stdout
    )
    assert [c["chunk"] for c in exported["story"]["turns"][0]["rounds"][0]["chunks"]] == [1, 2, 3]
    assert exported["verification"]["status"] == "intact"

    listed = run_cli("--project", str(root), "review", "list")
    assert listed.returncode == 0 and cid[:8] in listed.stdout

    stats = json.loads(run_cli("--project", str(root), "review", "stats", "--json").stdout)
    chunked = stats["chunked_review"]
    assert chunked["sent_back"] == 1 and chunked["drafts_stopped"] == 1 and chunked["turns_withdrawn"] == 1
    assert chunked["chunk_verdicts"] == sum(len(r["chunks"]) for r in exported["story"]["turns"][0]["rounds"])
    text = run_cli("--project", str(root), "review", "stats")
    assert "chunked review" in text.stdout
