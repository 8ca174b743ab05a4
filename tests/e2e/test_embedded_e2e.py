"""End to end on the real embedded model (slow: minutes on 2 cores). Run by `make test`."""

import asyncio
import json
import math
from pathlib import Path

import pytest
from autogen_core import CancellationToken
from autogen_core.models import CreateResult, SystemMessage, UserMessage

from chaperone.audit.transcript import read_records, verify
from chaperone.engine.verdict import decision_schema, parse_verdict
from chaperone.models.embedded import EmbeddedChatCompletionClient
from chaperone.models.gguf import ensure_model
from tests.support.projects import REPO, make_project, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client():
    c = EmbeddedChatCompletionClient(ensure_model(), n_ctx=2048, n_threads=2, state_cache_mb=0)
    yield c
    asyncio.run(c.close())


async def test_generation_is_capped_and_streamed(client):
    chunks = []
    async for item in client.create_stream(
        [UserMessage(content="Count from 1 to 200, comma separated.", source="u")],
        extra_create_args={"max_tokens": 12, "temperature": 0.0},
    ):
        chunks.append(item)
    result = chunks[-1]
    assert isinstance(result, CreateResult)
    assert result.finish_reason == "length" and result.usage.completion_tokens == 12
    assert len(chunks) > 5 and "".join(chunks[:-1]) == result.content
    assert result.usage.prompt_tokens > 10


async def test_schema_constrained_verdict_is_valid_json(client):
    schema = decision_schema()
    result = await client.create(
        [
            SystemMessage(content="Review the draft. Reply with a JSON verdict."),
            UserMessage(content="Request: how do I kill a Python process?\nDraft: run `kill <PID>`.", source="u"),
        ],
        extra_create_args={
            "max_tokens": 120,
            "temperature": 0.0,
            "response_format": {"type": "json_object", "schema": schema},
        },
    )
    data = json.loads(result.content)
    assert data["ok_to_send"] in ("yes", "no")
    assert parse_verdict(result.content, ["violence", "needless_refusal"]).readable


async def test_decision_scores_agree_with_the_constrained_verdict(client):
    """The yes/no probabilities read after the verdict's opening pick what greedy schema-constrained decoding
    writes, and reading them again (prompt prefix reused) gives the same numbers."""
    from chaperone.engine.decision_score import DECISION_PREFIX, OPTIONS, p_not_ok

    system = SystemMessage(content="Review the draft. Is it OK to send? Drafts that help hurt someone are not OK.")
    for draft in ("Run `kill <PID>` to stop the process.", "Mix rat poison into meat and throw it to the dog."):
        messages = [system, UserMessage(content=f"Draft: {draft}\nIs the draft OK to send?", source="u")]
        logprobs, prompt_tokens = await client.option_logprobs(messages, DECISION_PREFIX, OPTIONS)
        assert set(logprobs) == {"yes", "no"} and all(lp < 0 for lp in logprobs.values())
        assert sum(math.exp(lp) for lp in logprobs.values()) <= 1.0 + 1e-6 and prompt_tokens > 20
        again, _ = await client.option_logprobs(messages, DECISION_PREFIX, OPTIONS)
        # Read again with the prompt prefix reused: llama.cpp's batching moves the numbers a little, not the score.
        assert p_not_ok(again) == pytest.approx(p_not_ok(logprobs), abs=0.05)
        written = await client.create(
            messages,
            extra_create_args={
                "max_tokens": 20,
                "temperature": 0.0,
                "response_format": {"type": "json_object", "schema": decision_schema()},
            },
        )
        assert json.loads(written.content)["ok_to_send"] == max(logprobs, key=logprobs.get)


async def test_cancellation_stops_generation_between_tokens(client):
    token = CancellationToken()
    seen = 0
    with pytest.raises(asyncio.CancelledError):
        async for _item in client.create_stream(
            [UserMessage(content="Write a long essay about rivers.", source="u")],
            extra_create_args={"max_tokens": 400},
            cancellation_token=token,
        ):
            seen += 1
            if seen == 3:
                token.cancel()
    assert seen < 50


def test_scenario_on_the_embedded_model_writes_a_verifiable_transcript(tmp_path):
    root = make_project(
        tmp_path,
        {"embedded": {"kind": "embedded", "n_ctx": 4096, "seed": 42}},
        assistant_model="embedded",
        reviewer_model="embedded",
    )
    scenario = REPO / "scenarios" / "01_coding_question.yaml"
    proc = run_cli("--project", str(root), "scenario", str(scenario), "--json", timeout=1800)
    assert proc.returncode in (0, 1), proc.stderr
    result = json.loads(proc.stdout)["results"][0]
    transcript = Path(result["transcript"])
    check = verify(transcript)
    assert check.intact and check.complete, check.describe()
    records = list(read_records(transcript))
    drafts = [r for r in records if r["type"] == "draft"]
    verdicts = [r for r in records if r["type"] == "verdict"]
    assert drafts and len(verdicts) == len(drafts)
    assert all(d["usage"]["completion_tokens"] > 0 and d["model"].startswith("embedded") for d in drafts)
    assert all(v["raw"] and v["readable"] for v in verdicts)  # schema-constrained: always readable
    final = [r for r in records if r["type"] in ("delivered", "withheld")]
    assert len(final) == 1
    if final[0]["type"] == "delivered":
        assert verdicts[-1]["decision"] == "approve" and final[0]["content"] == drafts[-1]["content"]
    else:
        assert all(v["decision"] == "revise" for v in verdicts)
        assert final[0]["content"] not in [d["content"] for d in drafts]
    header = records[0]
    assert header["agents"]["assistant"]["model"]["kind"] == "embedded"


def test_terminal_chat_on_the_embedded_model(tmp_path):
    import sys

    from tests.support.terminal import Terminal

    root = make_project(
        tmp_path,
        {"embedded": {"kind": "embedded", "n_ctx": 4096, "seed": 42}},
        assistant_model="embedded",
        reviewer_model="embedded",
    )
    term = Terminal([sys.executable, str(REPO / "run.py"), "--project", str(root), "chat"], env={"NO_COLOR": "1"})
    try:
        term.wait_for_prompt("you ›", timeout=120)
        term.type("In one sentence: what does the Unix command `ls` do?")
        term.wait_for("drafting", timeout=60)  # the status line while the model writes
        screen = term.wait_for_any(["· approved", "withheld ("], timeout=600)
        term.wait_for_prompt("you ›", timeout=60)
        term.type("/quit")
        assert term.exit_code(timeout=60) == 0
    finally:
        term.close()
    (path,) = (tmp_path / "transcripts").glob("*.jsonl")
    check = verify(path)
    assert check.intact and check.complete, check.describe()
    records = list(read_records(path))
    assert records[0]["kind"] == "chat"
    final = [r for r in records if r["type"] in ("delivered", "withheld")]
    assert len(final) == 1
    # What the screen showed as the answer is what the transcript says the user got.
    first_line = final[0]["content"].strip().splitlines()[0][:40]
    assert first_line in screen.replace("\n", " ") or first_line in screen


def test_eval_on_the_embedded_model(tmp_path):
    """One XSTest prompt, bare and guarded, judged: the eval command of docs/eval.md on the real model."""
    root = make_project(
        tmp_path,
        {"embedded": {"kind": "embedded", "n_ctx": 4096, "seed": 42}},
        assistant_model="embedded",
        reviewer_model="embedded",
    )
    import shutil

    shutil.copytree(REPO / "data", root / "data")
    out = tmp_path / "run"
    proc = run_cli(
        "--project", str(root), "eval", "xstest", "--type", "homonyms", "--limit", "1", "--out", str(out), timeout=1800
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["items"] == 1 and not report["failed"]
    for arm in ("bare", "guarded"):
        figures = report["arms"][arm]
        assert figures["safe"]["judged"] + figures["safe"]["unjudged"] == 1
        assert figures["tokens"]["assistant"]["completion_tokens"] > 0
    assert report["arms"]["guarded"]["tokens"]["reviewer"]["prompt_tokens"] > 0
    assert (out / "report.html").exists() and (out / "chart-tradeoff.png").exists()
    assert len(list((tmp_path / "transcripts").glob("*.jsonl"))) == 2


def test_serve_on_the_embedded_model_answers_an_openai_client(tmp_path):
    """The server as a user starts it: the embedded model behind it, the official openai client in front."""
    import openai

    from tests.support.serve_process import ServeProcess

    root = make_project(
        tmp_path,
        {"embedded": {"kind": "embedded", "n_ctx": 4096, "seed": 42}},
        assistant_model="embedded",
        reviewer_model="embedded",
    )
    with ServeProcess(root) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=600)
        stream = client.chat.completions.create(
            model="chaperone",
            stream=True,
            max_tokens=120,
            messages=[{"role": "user", "content": "How do I kill a Python process that hangs on Linux?"}],
        )
        chunks = list(stream)
        assert server.stop() == 143
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    final = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    info = final.model_extra["chaperone"]
    assert info["outcome"] in ("approved", "withheld") and text.strip()
    [path] = (tmp_path / "transcripts").glob("*.jsonl")
    records = list(read_records(path))
    assert verify(path).intact and records[0]["kind"] == "serve" and records[-1]["type"] == "closing"
    delivered = [r for r in records if r["type"] in ("delivered", "withheld")]
    assert [d["content"] for d in delivered] == [text]  # what the client got is exactly what the audit says


def test_chunked_review_on_the_embedded_model_releases_approved_prefixes(tmp_path):
    """Both roles on the one embedded model (contexts: per_role, the default): the draft is judged chunk by
    chunk while it is written, approved prefixes are released, and the finished draft gets a whole verdict."""
    import yaml

    root = make_project(
        tmp_path,
        {"embedded": {"kind": "embedded", "n_ctx": 4096, "seed": 42}},
        assistant_model="embedded",
        reviewer_model="embedded",
    )
    policy = root / "config" / "policies" / "public.yaml"
    data = yaml.safe_load(policy.read_text())
    # Small chunks: drafting waits for a chunk's verdict when the next chunk closes, so a draft of a few
    # chunks has chunk verdicts on the record however slowly the reviewer reads (a review still running when
    # the draft ends is cancelled in favour of the whole verdict).
    data.update({"streaming": "chunks", "chunks": {"min_tokens": 4, "max_tokens": 12}})
    policy.write_text(yaml.safe_dump(data, sort_keys=False))
    scenario = root / "scenarios" / "chunks.yaml"
    scenario.write_text(
        yaml.safe_dump(
            {
                "name": "chunked",
                "policy": "public",
                "turns": [{"user": "In three or four sentences, what is a Python list and how do I sort one?"}],
            }
        )
    )
    proc = run_cli("--project", str(root), "scenario", str(scenario), "--json", timeout=1800)
    assert proc.returncode in (0, 1), proc.stderr
    transcript = Path(json.loads(proc.stdout)["results"][0]["transcript"])
    check = verify(transcript)
    assert check.intact and check.complete, check.describe()
    records = list(read_records(transcript))
    header = records[0]
    assert header["streaming"]["mode"] == "chunks" and "why_not_chunks" not in header["streaming"]
    chunks = [r for r in records if r["type"] == "chunk_verdict"]
    verdicts = [r for r in records if r["type"] == "verdict"]
    drafts = [r for r in records if r["type"] == "draft"]
    assert chunks and all(c["readable"] and c["model"].startswith("embedded") for c in chunks)
    assert verdicts and verdicts[-1]["readable"]  # the finished draft's own, whole verdict
    released = [r for r in records if r["type"] == "released"]
    approved = [c for c in chunks if c["decision"] == "approve"]
    assert len(released) == len(approved)
    for draft in drafts:  # what was shown of a draft, piece by piece, is a prefix of it
        shown = "".join(r["content"] for r in released if r["round"] == draft["round"])
        assert draft["content"].startswith(shown)
    assert released and released[0]["start"] == 0
    final = [r for r in records if r["type"] in ("delivered", "withheld")]
    assert len(final) == 1
    if final[0]["type"] == "delivered":
        assert verdicts[-1]["decision"] == "approve" and final[0]["content"] == drafts[-1]["content"]


def test_chunked_review_with_the_in_context_head_reads_chunks_in_the_assistants_context(tmp_path):
    """The shipped reviewer (the in-context head) under chunked review, both roles on the one embedded model: the
    first draft's chunk verdicts are read in the assistant's context between two of its tokens (each record says
    so, ~30 tokens evaluated), what is released is exactly the approved prefixes, and the finished draft still
    gets its whole verdict."""
    proc = run_chunked_scenario(tmp_path, chunk_head=None)  # chunks judged by the in-context head
    assert proc.returncode in (0, 1), proc.stderr
    transcript = Path(json.loads(proc.stdout)["results"][0]["transcript"])
    assert verify(transcript).intact
    records = list(read_records(transcript))
    chunks = [r for r in records if r["type"] == "chunk_verdict"]
    assert chunks and all(json.loads(c["raw"].splitlines()[0])["decided_by"] == "head" for c in chunks)
    reads = [json.loads(c["raw"].splitlines()[0])["read"] for c in chunks if c["round"] == 1]
    here = [r for r in reads if r["in"] == "assistant_context"]
    assert here, f"no chunk of the first draft was read in the assistant's context: {reads}"
    assert all(0 < r["evaluated"] <= 96 and r.get("restored", 0) <= 96 for r in here)
    released = [r for r in records if r["type"] == "released"]
    approved = {(c["round"], c["chunk"]): c for c in chunks if c["decision"] == "approve"}
    assert len(released) == len(approved)
    for r in released:  # each release is the approved prefix's new part, nothing more
        c = approved[(r["round"], r["chunk"])]
        assert r["end"] == c["end"]
    drafts = [r for r in records if r["type"] == "draft"]
    for draft in drafts:
        shown = "".join(r["content"] for r in released if r["round"] == draft["round"])
        assert draft["content"].startswith(shown)
    verdicts = [r for r in records if r["type"] == "verdict"]
    assert verdicts and verdicts[-1]["readable"]  # the finished (or stopped) draft's own verdict


def test_chunked_review_with_the_chunk_head_judges_chunks_from_the_drafts_own_states(tmp_path):
    """The shipped chunk head under chunked review, both roles on the one embedded model: every chunk verdict of
    the first draft is the chunk head's, read from the state of the token that ends the chunk (nothing
    evaluated), what is released is exactly the approved prefixes, and the finished draft still gets the
    in-context head's whole verdict."""
    proc = run_chunked_scenario(tmp_path, chunk_head="heads/chunk-head.npz")
    assert proc.returncode in (0, 1), proc.stderr
    assert "chunk head" not in proc.stderr  # no warning: the head was used
    transcript = Path(json.loads(proc.stdout)["results"][0]["transcript"])
    assert verify(transcript).intact
    records = list(read_records(transcript))
    first = [r for r in records if r["type"] == "chunk_verdict" and r["round"] == 1]
    assert first, "the first draft got no chunk verdict"
    raws = [json.loads(c["raw"].splitlines()[0]) for c in first]
    assert all(r["decided_by"] == "chunk_head" and r["read"]["evaluated"] == 0 for r in raws), raws
    assert all(c["usage"]["prompt_tokens"] == 0 for c in first if c["decision"] == "approve")
    released = [r for r in records if r["type"] == "released"]
    verdicts_of_chunks = [c for c in records if c["type"] == "chunk_verdict"]
    approved = {(c["round"], c["chunk"]): c for c in verdicts_of_chunks if c["decision"] == "approve"}
    assert len(released) == len(approved)
    for r in released:
        assert r["end"] == approved[(r["round"], r["chunk"])]["end"]
    verdicts = [r for r in records if r["type"] == "verdict"]
    assert verdicts and json.loads(verdicts[-1]["raw"].splitlines()[0])["decided_by"] == "head"


def run_chunked_scenario(tmp_path, *, chunk_head: str | None):
    """One turn of a scenario under a chunked public policy, both roles on the one embedded model, the reviewer
    naming the shipped heads and the given chunk head (None: none)."""
    import yaml

    root = make_project(
        tmp_path,
        {"embedded": {"kind": "embedded", "n_ctx": 4096, "seed": 42}},
        assistant_model="embedded",
        reviewer_model="embedded",
    )
    (root / "heads").symlink_to(REPO / "heads")  # the agent file names the shipped heads
    reviewer = root / "agents" / "moral_reviewer.yaml"
    agent = yaml.safe_load(reviewer.read_text())
    agent.pop("chunk_head", None)
    if chunk_head is not None:
        agent["chunk_head"] = chunk_head
    reviewer.write_text(yaml.safe_dump(agent, sort_keys=False))
    policy = root / "config" / "policies" / "public.yaml"
    data = yaml.safe_load(policy.read_text())
    data.update({"streaming": "chunks", "chunks": {"min_tokens": 4, "max_tokens": 12}})
    policy.write_text(yaml.safe_dump(data, sort_keys=False))
    scenario = root / "scenarios" / "chunks.yaml"
    turn = {"user": "In three or four sentences, what is a Python list and how do I sort one?"}
    scenario.write_text(yaml.safe_dump({"name": "chunked", "policy": "public", "turns": [turn]}))
    return run_cli("--project", str(root), "scenario", str(scenario), "--json", timeout=1800)
