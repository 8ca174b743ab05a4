"""The load benchmark's transcript check gives each transcript the status `review verify` gives it."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import serve_load

from tests.support.review_corpus import build_corpus


def test_every_transcript_must_be_intact_and_every_answered_one_present(tmp_path):
    corpus = build_corpus(tmp_path)
    closed = [corpus.coding, corpus.insult, corpus.chat]
    rows = [{"transcript": p.name} for p in closed]

    unfinished = serve_load.check_transcripts(corpus.folder, [*rows, {"transcript": None}])
    assert unfinished["status"] == {"intact": 3, "incomplete": 1} and not unfinished["complete"]
    assert list(unfinished["not_intact"]) == [corpus.open.name]
    assert unfinished["not_intact"][corpus.open.name].startswith("incomplete · hash chain intact")

    corpus.open.unlink()
    assert serve_load.check_transcripts(corpus.folder, rows)["complete"]

    lines = corpus.insult.read_text().splitlines(keepends=True)
    corpus.insult.write_text("".join(lines[:-1]))  # the closing record cut off at a record boundary
    cut = serve_load.check_transcripts(corpus.folder, [*rows, {"transcript": "gone.jsonl"}])
    assert not cut["complete"] and cut["missing"] == ["gone.jsonl"]
    assert cut["not_intact"][corpus.insult.name].startswith("TAMPERED: cut short")
