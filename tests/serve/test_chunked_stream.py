"""`run.py serve` streaming under a chunked-review policy (scripted models, a real server on 127.0.0.1):
approved prefixes arrive as SSE deltas while the draft is written; shown text that is withdrawn ends the
stream with the policy's fallback and finish_reason content_filter."""

from __future__ import annotations

import json

import httpx2 as httpx
import pytest

from tests.support.chunked import REVISED, SAFE, chunked_project
from tests.support.projects import make_project
from tests.support.serve_process import ServeProcess

KEY = "chunk-test-key-" + "x" * 20
FALLBACK = "I can't help with that here. If it's something else, just ask."


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chunked-serve")
    root = chunked_project(lambda models, **kw: make_project(tmp, models, **kw))
    with ServeProcess(root, env={"CHAPERONE_API_KEYS": f"k={KEY}"}) as proc:
        proc.tmp = tmp
        yield proc


def stream(server: ServeProcess, text: str) -> tuple[list[dict], dict[str, str]]:
    body = {"model": "chaperone", "messages": [{"role": "user", "content": text}], "stream": True}
    with httpx.stream(
        "POST",
        f"{server.base_url}/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
        headers = dict(response.headers)
    assert lines[-1] == "data: [DONE]"
    return [json.loads(line[6:]) for line in lines[:-1]], headers


def records(server: ServeProcess, transcript_id: str) -> list[dict]:
    [path] = (server.tmp / "transcripts").glob(f"*-{transcript_id[:12]}.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def deltas(chunks: list[dict]) -> list[str]:
    return [c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]]


def test_shown_text_withdrawn_ends_the_stream_with_the_fallback_and_content_filter(server):
    chunks, headers = stream(server, "Tell me about pets.")
    pieces = [p for p in deltas(chunks) if p]
    # The first two sentences, approved as prefixes, were sent as they were released, then the fallback.
    assert "".join(pieces) == SAFE.rstrip() + "\n\n" + FALLBACK
    assert "lethal" not in "".join(pieces)
    [final] = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert final["choices"][0]["finish_reason"] == "content_filter"
    extra = final["chaperone"]
    assert extra["outcome"] == "withheld" and extra["withdrawn"] == len(SAFE.rstrip())
    kinds = [r["type"] for r in records(server, headers["x-chaperone-transcript-id"])]
    assert kinds.count("released") == 2 and "withdrawn" in kinds and "chunk_verdict" in kinds
    assert kinds.count("draft") == 1  # no revision: the stream could not have shown it


def test_an_approved_answer_arrives_prefix_by_prefix_and_then_its_rest(server):
    chunks, headers = stream(server, "Say something friendly.")
    pieces = [p for p in deltas(chunks) if p]
    assert "".join(pieces) == SAFE + "Both make fine companions."
    assert pieces[0] == "Dogs are loyal friends."  # the first approved prefix, alone in its delta
    [final] = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert final["choices"][0]["finish_reason"] == "stop" and "withdrawn" not in final["chaperone"]
    recs = records(server, headers["x-chaperone-transcript-id"])
    verdicts = [r for r in recs if r["type"] == "verdict"]
    assert len(verdicts) == 1 and verdicts[0]["decision"] == "approve" and "chunk" not in verdicts[0]
    delivered = next(r for r in recs if r["type"] == "delivered")
    assert delivered["released"] == sum(len(r["content"]) for r in recs if r["type"] == "released")


def test_a_whole_answer_request_is_revised_as_before(server):
    body = {"model": "chaperone", "messages": [{"role": "user", "content": "Tell me about pets."}]}
    response = httpx.post(
        f"{server.base_url}/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=30
    )
    assert response.status_code == 200
    answer = response.json()["choices"][0]
    assert answer["message"]["content"] == REVISED and answer["finish_reason"] == "stop"
    assert response.headers["x-chaperone-revisions"] == "1"
