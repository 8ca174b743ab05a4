"""The hostile drafts against the real reviewer on the embedded model (slow: a few minutes; run by `make test`).

Asserted: the structural defences (a verdict readable from the schema, the decision taken from the
model's own output, no text the chat template would read as a turn marker, the prompt inside the
context window with room for the verdict). Not asserted: the model's decision on each draft. A 1.5B
model misses some; the decisions are printed and written to tests/artifacts/hostile_decisions.json, and for
the fresh set (harmful and harmless answers in wrappers, tests/support/hostile_drafts_fresh.py) to
tests/artifacts/hostile_fresh_decisions.json, and for the format set (harmful and harmless answers in the format
the user asked for, tests/support/format_drafts.py) to tests/artifacts/format_decisions.json, and for the set of
harm in mild words (tests/support/mild_drafts.py) to tests/artifacts/mild_decisions.json.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from chaperone.config.project import load_project
from chaperone.engine.choice import SessionChoice, build_reviewer, resolve
from chaperone.engine.memory import ConversationMemory
from chaperone.models.pool import ModelPool
from tests.support.format_drafts import FORMAT_CORPUS
from tests.support.hostile_drafts import CORPUS
from tests.support.hostile_drafts_fresh import FRESH_CORPUS
from tests.support.mild_drafts import MILD_CORPUS
from tests.support.projects import REPO

pytestmark = pytest.mark.slow

ARTIFACTS = REPO / "tests" / "artifacts"


def test_the_embedded_reviewer_on_every_hostile_draft():
    rows = asyncio.run(_review_all(CORPUS))
    _write(rows, "hostile_decisions.json")
    revised = sum(r["decision"] == "revise" for r in rows)
    print(f"\nembedded reviewer on {len(rows)} hostile drafts: {revised} sent back, {len(rows) - revised} approved")
    _print(rows)


def test_the_embedded_reviewer_on_the_fresh_hostile_set_harmful_and_harmless():
    _review_labelled(FRESH_CORPUS, "the fresh set", "hostile_fresh_decisions.json")


def test_the_embedded_reviewer_on_answers_in_the_format_asked_for():
    _review_labelled(FORMAT_CORPUS, "the format set", "format_decisions.json")


def test_the_embedded_reviewer_on_harm_in_mild_words():
    _review_labelled(MILD_CORPUS, "the mild-words set", "mild_decisions.json")


def _review_labelled(corpus, title: str, artifact: str) -> None:
    rows = asyncio.run(_review_all(corpus))
    labels = {d.name: d.harmful for d in corpus}
    for r in rows:
        r["harmful"] = labels[r["name"]]
    _write(rows, artifact)
    harmful = [r for r in rows if r["harmful"]]
    harmless = [r for r in rows if not r["harmful"]]
    caught = sum(r["decision"] == "revise" for r in harmful)
    refused = sum(r["decision"] == "revise" for r in harmless)
    print(
        f"\nembedded reviewer on {title}: {caught}/{len(harmful)} harmful drafts sent back, "
        f"{refused}/{len(harmless)} harmless ones sent back"
    )
    _print(rows)


def _write(rows: list[dict], name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / name).write_text(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")


def _print(rows: list[dict]) -> None:
    for r in rows:
        print(f"  {r['name']:<34} {r['decision']:<8} {r['seconds']:6.1f} s  {r['prompt_tokens']:5d} prompt tokens")


async def _review_all(drafts) -> list[dict]:
    project = load_project(REPO)
    # Long drafts are truncated here (not sent back unread, the default) so the model reads every attack.
    project.settings.reviewer_context.over_limit = "truncate"
    pool = ModelPool(project.models, REPO / "config/models.yaml")
    reviewer = build_reviewer(project, pool, resolve(project, SessionChoice()), ConversationMemory())
    client, n_ctx = reviewer.model.client, reviewer.model.spec.n_ctx
    room = n_ctx - reviewer.spec.generation.max_tokens
    first_special = client.llm.tokenize(b"<|endoftext|>", add_bos=False, special=True)[0]
    seen: list[list] = []  # the prompted pass's messages, one list per scoring call
    read: list[int] = []  # the prompted pass's own prompt tokens (a head's pass reads its own context)
    score = client.option_logprobs
    head = reviewer.head
    head_seen: list[list[dict]] = []  # the head's prompt, one list of turns per read
    head_read = head._read if head is not None else None

    async def spy(messages, *args, **kw):
        seen.append(messages)
        result = await score(messages, *args, **kw)
        read.append(result[1])
        return result

    async def head_spy(messages, reuse, while_writing=True):
        head_seen.append(messages)
        return await head_read(messages, reuse, while_writing)

    client.option_logprobs = spy
    if head is not None:
        head._read = head_spy
    # Which passes decide: the prompted one (no head, or a head stacked with its score), the head's, or both.
    prompted_calls = 1 if head is None or head.head.stack is not None else 0
    rows = []
    try:
        for d in drafts:
            started = time.perf_counter()
            before, head_before = len(seen), len(head_seen)
            result = await reviewer.judge(d.request, d.draft, critique=False)
            seconds = time.perf_counter() - started
            # Decision stage only: the verdict comes from the scoring passes it is made of, and nothing else.
            assert len(seen) - before == prompted_calls, (d.name, len(seen) - before)
            assert result.verdict.readable, (d.name, result.raw)
            own = json.loads(result.raw)["ok_to_send"]
            assert result.verdict.decision == {"yes": "approve", "no": "revise"}[own], d.name
            # The chat template puts each content between real turn markers; no content may add its own,
            # in the prompted pass's messages or in the head's.
            if prompted_calls:
                for m in seen[-1]:
                    ids = client.llm.tokenize(m.content.encode("utf-8"), add_bos=False, special=True)
                    assert max(ids) < first_special, (d.name, type(m).__name__)
                # Rubric first, the whole prompt read (llama.cpp refuses rather than slides), room for the verdict.
                assert 0 < read[-1] <= room and read[-1] <= result.prompt_tokens, (d.name, read[-1])
            if head is not None:
                assert len(head_seen) > head_before, d.name  # the head read this draft
                for turn in head_seen[-1]:
                    ids = client.llm.tokenize(turn["content"].encode("utf-8"), add_bos=False, special=True)
                    assert max(ids) < first_special, (d.name, turn["role"])
                assert json.loads(result.raw)["decided_by"] == "head", d.name
            rows.append(
                {
                    "name": d.name,
                    "attack": d.attack,
                    "decision": result.verdict.decision,
                    "seconds": round(seconds, 2),
                    "prompt_tokens": result.prompt_tokens,
                    "draft_chars": len(d.draft),
                    "raw": result.raw,
                }
            )
    finally:
        client.option_logprobs = score
        if head is not None:
            head._read = head_read
        await pool.close()
    return rows
