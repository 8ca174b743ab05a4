"""Chunk verdicts from the assistant's draft-token states (engine/chunk_head.py), through the real Conversation
and chunked review, on scripted models: an assistant stand-in that records a one-number "state" for each piece
as the embedded client records hidden states (models/draft_states.py), and a real chunk head file."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from chaperone.audit.transcript import read_records, verify
from chaperone.engine import chunk_head, head_decision
from chaperone.engine.chunk_head import ChunkHead, ChunkScore, layout_sha256
from chaperone.engine.events import ChunkVerdict, Released, VerdictEvent
from chaperone.models import draft_states, gguf
from chaperone.models.scripted import ScriptedChatCompletionClient
from chaperone.reviewer_head.head import FORMAT, OVERALL, HeadError, ReviewerHead
from tests.engine.test_chunked_review import conversation, of
from tests.support.chunked import SAFE, chunked_project

SYSTEM = "You are a test assistant."


class _Batch:
    def __init__(self) -> None:
        self.n_tokens, self.pos, self.token = 1, [0], [0]


class _Llm:
    """What DraftStates reads of a llama: the batch being evaluated and each token's bytes."""

    def __init__(self, words: list[str]):
        self.words = words
        self._batch = type("B", (), {"batch": _Batch()})()

    def detokenize(self, tokens):
        return "".join(self.words[t] for t in tokens).encode()


class StateRecordingClient(ScriptedChatCompletionClient):
    """The scripted assistant, one word a piece; asked for draft states, it "evaluates" each word after streaming
    it (as llama.cpp does, one token later) and records a state: 1.0 once a word of `bad` was written, else 0.0
    (NaN for the words of `nan`)."""

    def __init__(self, spec, bad=("lethal",), nan=()):
        super().__init__(spec)
        self.bad, self.nan = bad, nan
        self.asked = 0

    async def create_stream(self, messages, *, extra_create_args=None, **kwargs):
        import asyncio

        extra = dict(extra_create_args or {})
        draft = extra.pop(draft_states.ARG, None)
        words: list[str] = []
        llm = _Llm(words)
        if draft is not None:
            self.asked += 1
            draft.begin(llm, 0, asyncio.get_running_loop())
        last = None
        try:
            async for item in super().create_stream(messages, extra_create_args=extra, **kwargs):
                if isinstance(item, str) and item:
                    if draft is not None and last is not None:
                        self._evaluate(draft, llm, len(words) - 1, last)
                    words.append(item)
                    last = item
                    await asyncio.sleep(0)
                elif draft is not None and last is not None:  # the result: the last word was evaluated too
                    self._evaluate(draft, llm, len(words) - 1, last)
                yield item
        finally:
            if draft is not None:
                draft.end()

    def _evaluate(self, draft, llm, pos, word):
        # Like a causal model's state, a word's state carries every word before it: 1.0 once a bad word was written.
        llm._batch.batch.pos, llm._batch.batch.token = [pos], [pos]
        so_far = "".join(llm.words[: pos + 1])
        value = math.nan if any(n in word for n in self.nan) else float(any(b in so_far for b in self.bad))
        draft.record(0, np.array([value], dtype=np.float32))


def a_chunk_head(client, system=SYSTEM, threshold=0.5) -> ChunkHead:
    card = {
        "format": FORMAT,
        "outputs": [OVERALL],
        "layers": [0],
        "width": 1,
        "model": {"sha256": gguf.GGUF_SHA256},
        "prompt": {"sha256": layout_sha256(system, 2000), "system": system, "max_draft_chars": 2000},
        "threshold": threshold,
    }
    head = ReviewerHead(card, np.zeros(1), np.ones(1), np.array([[12.0]]), np.array([-6.0]))  # 1.0 -> ~1, 0.0 -> ~0
    return ChunkHead(head=head, path="heads/test-chunk.npz", system=system, threshold=threshold, context=client)


def with_chunk_head(project_factory, **client_kw):
    conv, events, _ = conversation(chunked_project(project_factory))
    assistant = conv.chat.assistant
    assistant.spec = assistant.spec.model_copy(update={"system_prompt": SYSTEM})
    client = StateRecordingClient(assistant.model.client.spec, **client_kw)
    assistant.model.client = client
    conv.chat.reviewer.chunk_head = a_chunk_head(client)
    return conv, events, client


async def test_the_chunk_head_judges_each_chunk_from_its_last_tokens_state_and_reads_nothing(project_factory):
    conv, events, client = with_chunk_head(project_factory)
    await conv.send("Tell me about pets, and how to get rid of the dog next door.")
    conv.close()
    assert client.asked >= 1
    first = [v for v in of(events, ChunkVerdict) if v.round == 1]
    assert [v.decision for v in first] == ["approve", "approve", "revise"]
    for v in first:
        raw = json.loads(v.raw.splitlines()[0])
        assert raw["decided_by"] == "chunk_head" and raw["read"] == {
            "in": "draft_tokens",
            "position": raw["read"]["position"],
            "evaluated": 0,
        }
    assert first[0].usage.prompt_tokens == 0 and first[1].usage.prompt_tokens == 0
    assert json.loads(first[2].raw.splitlines()[0])["scores"][OVERALL] > 0.9
    # Released: exactly the approved sentences; the bad one never shown.
    assert "".join(r.content for r in of(events, Released) if r.round == 1) == SAFE.rstrip()
    # The sent-back chunk still gets its critique from the reviewer model, and the whole draft its own verdict.
    assert first[2].critique
    assert of(events, VerdictEvent)[-1].chunk is None
    records = [r for r in read_records(conv.transcript_path) if r["type"] == "chunk_verdict"]
    assert all(json.loads(r["raw"].splitlines()[0])["decided_by"] == "chunk_head" for r in records if r["round"] == 1)
    assert verify(conv.transcript_path).intact


async def test_a_chunk_whose_state_is_no_number_is_not_an_approval(project_factory):
    conv, events, _ = with_chunk_head(project_factory, bad=(), nan=("friends",))
    result = await conv.send("Tell me about pets.")
    first = of(events, ChunkVerdict)[0]
    assert first.readable is False and first.decision != "approve"
    assert not [r for r in of(events, Released) if r.round == 1]
    assert result.outcome in ("approved", "withheld")


async def test_a_draft_under_another_system_prompt_is_judged_as_before_with_one_warning(project_factory, caplog):
    from loguru import logger

    conv, events, client = with_chunk_head(project_factory)
    conv.chat.reviewer.chunk_head = a_chunk_head(client, system="Another assistant prompt.")
    head_decision._warned.clear()  # the warning is said once per process
    messages: list[str] = []
    sink = logger.add(lambda m: messages.append(str(m)), level="WARNING")
    try:
        await conv.send("Tell me about pets.")
    finally:
        logger.remove(sink)
    assert client.asked == 0
    assert all("chunk_head" not in v.raw for v in of(events, ChunkVerdict))
    assert [v.decision for v in of(events, ChunkVerdict) if v.round == 1] == ["approve", "approve", "revise"]
    assert any("chunk head heads/test-chunk.npz not used" in m for m in messages)


def test_a_score_fails_closed_and_records_what_it_read():
    nan = ChunkScore(not_ok=math.nan, threshold=0.3, path="h.npz", position=7)
    assert not nan.readable and nan.send_back and nan.record()["ok_to_send"] == "no"
    low = ChunkScore(not_ok=0.1, threshold=0.3, path="h.npz", position=7)
    assert not low.send_back and low.record()["read"] == {"in": "draft_tokens", "position": 7, "evaluated": 0}
    assert ChunkScore(not_ok=0.3, threshold=0.3, path="h.npz", position=7).send_back


def test_the_policy_threshold_overrides_the_cards():
    head = a_chunk_head(client=None, threshold=0.5)
    state = {0: np.array([0.45], dtype=np.float32)}  # logit 12*0.45-6 = -0.6: p ~ 0.354
    assert not head.score(state, 3).send_back
    assert head.score(state, 3, threshold=0.3).send_back


@pytest.mark.parametrize("broken", [None, "other model", "no system"])
def test_a_chunk_head_loads_only_for_this_model_and_the_layout_of_the_system_it_names(tmp_path, broken):
    good = a_chunk_head(client=None).head
    card = json.loads(json.dumps(good.card))
    if broken == "other model":
        card["model"] = {"sha256": "0" * 64}
    elif broken == "no system":
        del card["prompt"]["system"]
    ReviewerHead(card, good.mean, good.scale, good.coef, good.intercept).save(tmp_path / "h.npz")
    if broken is None:
        assert chunk_head._loaded(tmp_path / "h.npz").card["threshold"] == 0.5
    else:
        with pytest.raises(HeadError):
            chunk_head._loaded(tmp_path / "h.npz")
