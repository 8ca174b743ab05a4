"""Chunked review (policy `streaming: chunks`) with scripted models: what is released, when the draft stops,
what the transcript records, and that a `whole` policy is untouched."""

from __future__ import annotations

import pytest
from autogen_core.models import CreateResult

from chaperone.audit.transcript import read_records, verify
from chaperone.config.project import load_project
from chaperone.engine.choice import SessionChoice
from chaperone.engine.conversation import Conversation
from chaperone.engine.events import ChunkVerdict, Delivered, Draft, Released, VerdictEvent, Withdrawn, Withheld
from chaperone.models.pool import ModelPool
from chaperone.models.scripted import ScriptedChatCompletionClient
from tests.support.chunked import AFTER, BAD, REVISED, SAFE, chunked_project


class CountingClient(ScriptedChatCompletionClient):
    """The scripted assistant, counting the pieces it was asked for: a stopped stream is never read to its end."""

    def __init__(self, spec):
        super().__init__(spec)
        self.streamed: list[int] = []

    async def create_stream(self, messages, **kwargs):
        self.streamed.append(0)
        async for item in super().create_stream(messages, **kwargs):
            if not isinstance(item, CreateResult):
                self.streamed[-1] += 1
            yield item


def conversation(root, **kw):
    project = load_project(root)
    pool = ModelPool(project.models, root / "config" / "models.yaml")
    events: list = []
    conv = Conversation(project, pool, SessionChoice(**kw), kind="test", sinks=[events.append])
    client = CountingClient(conv.chat.assistant.model.client.spec)
    conv.chat.assistant.model.client = client
    return conv, events, client


def of(events, kind):
    return [e for e in events if isinstance(e, kind)]


async def test_bad_third_sentence_releases_the_first_two_stops_the_draft_and_revises(project_factory):
    conv, events, client = conversation(chunked_project(project_factory))
    result = await conv.send("Tell me about pets, and how to get rid of the dog next door.")
    conv.close()

    released = of(events, Released)
    assert "".join(r.content for r in released if r.round == 1) == SAFE.rstrip()
    # Stopped within one chunk of the bad sentence: the sentence after it was written, nothing further.
    first = of(events, Draft)[0]
    assert first.stopped_at_chunk == 3
    assert first.content.startswith(SAFE + BAD.rstrip())
    assert not first.content.startswith(SAFE + BAD + "Then wait for the night. Nobody")
    assert client.streamed[0] < len((SAFE + BAD + AFTER).split())
    assert first.tokens_saved == 320 - client.streamed[0]
    # The chunk verdict sent back is the round's verdict: the turn went to revision as with a whole draft.
    chunk_verdicts = [v for v in of(events, ChunkVerdict) if v.round == 1]
    assert [v.decision for v in chunk_verdicts] == ["approve", "approve", "revise"]
    assert chunk_verdicts[-1].critique == "No poisoning instructions."
    round_one = [v for v in of(events, VerdictEvent) if v.round == 1]
    assert round_one[0].chunk == 3 and round_one[0].decision == "revise"
    [withdrawn] = of(events, Withdrawn)
    assert withdrawn.content == SAFE.rstrip() and withdrawn.round == 1
    # The revision is approved by a whole-draft verdict, and only then delivered.
    assert result.outcome == "approved" and result.revisions == 1 and result.text == REVISED
    final = of(events, VerdictEvent)[-1]
    assert final.round == 2 and final.chunk is None and final.decision == "approve"
    [delivered] = of(events, Delivered)
    assert delivered.content == REVISED and REVISED.startswith(REVISED[: delivered.released])
    assert events.index(final) < events.index(delivered)

    records = list(read_records(conv.transcript_path))
    kinds = [r["type"] for r in records]
    assert kinds.count("chunk_verdict") == len(of(events, ChunkVerdict))
    # The prompted decision's chunk verdicts carry no head fields (a head's do: tests/engine/test_head_decision.py).
    assert all(not {"scores", "flagged"} & set(r) for r in records if r["type"] == "chunk_verdict")
    assert "released" in kinds and "withdrawn" in kinds
    assert records[-1]["totals"]["chunk_verdicts"] == len(of(events, ChunkVerdict))
    assert records[-1]["totals"]["tokens_saved"] == first.tokens_saved
    assert verify(conv.transcript_path).intact


async def test_every_released_prefix_was_approved_as_that_exact_prefix(project_factory):
    conv, events, _ = conversation(chunked_project(project_factory))
    await conv.send("Tell me about pets.")
    approved = {(v.round, v.end, v.prefix_sha256) for v in of(events, ChunkVerdict) if v.decision == "approve"}
    drafts = {d.round: d.content for d in of(events, Draft)}
    shown = {}
    for r in of(events, Released):
        from chaperone.engine.verdict import text_sha

        prefix = drafts[r.round][: r.end]
        assert (r.round, r.end, text_sha(prefix)) in approved
        assert r.start == len(shown.get(r.round, "")) and prefix.endswith(r.content)
        shown[r.round] = prefix


async def test_an_approved_turn_gets_a_whole_draft_verdict_before_delivery(project_factory):
    conv, events, _ = conversation(chunked_project(project_factory))
    result = await conv.send("Say something friendly.")
    assert result.outcome == "approved" and result.revisions == 0
    assert of(events, Released), "approved prefixes were shown while the draft was written"
    [verdict] = of(events, VerdictEvent)
    assert verdict.chunk is None and verdict.decision == "approve"
    [delivered] = of(events, Delivered)
    assert events.index(verdict) < events.index(delivered)
    assert delivered.content[: delivered.released] == "".join(r.content for r in of(events, Released))
    assert not of(events, Withdrawn)


async def test_an_unreadable_chunk_verdict_is_not_an_approval(project_factory):
    root = chunked_project(project_factory)
    conv, events, _ = conversation(root)

    async def unreadable(*args, **kwargs):
        from autogen_core.models import RequestUsage

        return CreateResult(finish_reason="stop", content="no json here", usage=RequestUsage(0, 0), cached=False)

    conv.chat.reviewer.model.client.create = unreadable
    result = await conv.send("Say something friendly.")
    assert not of(events, Released)
    assert of(events, ChunkVerdict)[0].readable is False
    assert result.outcome == "withheld" and not result.delivered


async def test_a_stream_reader_ends_the_turn_with_the_fallback_when_shown_text_is_withdrawn(project_factory):
    conv, events, _ = conversation(chunked_project(project_factory))
    conv.stream_to(lambda event: None)
    result = await conv.send("Tell me about pets.")
    assert result.outcome == "withheld" and result.revisions == 0
    assert result.reason == "text already shown was withdrawn"
    assert of(events, Withdrawn) and of(events, Withheld)
    assert len(of(events, Draft)) == 1  # no revision: the stream could not show it


async def test_whole_policy_records_exactly_what_it_did_before(project_factory):
    conv, events, client = conversation(chunked_project(project_factory, streaming="whole"))
    result = await conv.send("Tell me about pets.")
    conv.close()
    assert result.outcome == "approved" and result.revisions == 1
    assert not of(events, ChunkVerdict) and not of(events, Released) and not of(events, Withdrawn)
    assert client.streamed == []  # no live view watching: nothing streamed, as before
    for record in read_records(conv.transcript_path):
        assert not {"released", "stopped_at_chunk", "tokens_saved", "chunk", "chunk_verdicts", "streaming"} & set(
            record
        )
        assert not {"chunk_verdicts", "tokens_saved"} & set(record.get("totals", {}))


@pytest.mark.parametrize(
    "chunks", [{"min_tokens": 9, "max_tokens": 3}, {"max_tokens": 0}, {"size": 3}, {"growth": 0.5}, {"growth": "fast"}]
)
def test_bad_chunk_settings_name_the_file_and_field(project_factory, chunks):
    from chaperone.errors import ConfigError

    root = chunked_project(project_factory, chunks=chunks)
    with pytest.raises(ConfigError) as err:
        load_project(root).policy("public")
    assert "public.yaml" in str(err.value) and "chunks" in str(err.value)


class EndlessClient(ScriptedChatCompletionClient):
    """An assistant that yields to the event loop between pieces and would write for ever: only a stop ends it."""

    def __init__(self, spec, words):
        super().__init__(spec)
        self.words, self.streamed = words, 0

    async def create_stream(self, messages, **kwargs):
        import asyncio

        for n in range(10_000):
            await asyncio.sleep(0)  # a real backend's pause between tokens: the verdict may arrive meanwhile
            self.streamed += 1
            yield self.words[n] if n < len(self.words) else "more "
        raise AssertionError("the generation was never stopped")


async def test_a_verdict_that_arrives_mid_chunk_stops_the_generation_at_once(project_factory):
    conv, events, _ = conversation(chunked_project(project_factory, chunks={"min_tokens": 1, "max_tokens": 200}))
    words = (SAFE + BAD).split(" ")
    words = [w + " " for w in words if w]
    client = EndlessClient(conv.chat.assistant.model.client.spec, words)
    conv.chat.assistant.model.client = client
    conv.stream_to(lambda event: None)  # one round: the stopped draft is the only one
    await conv.send("Tell me about pets.")
    [draft] = of(events, Draft)
    # The bad sentence closed its chunk at word len(words)+1 (a boundary needs the next word's arrival);
    # the scripted reviewer answers within a loop turn, so only a word or two more were written, not a chunk.
    assert draft.stopped_at_chunk == 3
    assert client.streamed <= len(words) + 3
    assert "more more more" not in draft.content


async def test_one_serial_model_for_both_roles_falls_back_to_whole_review(project_factory, monkeypatch):
    import dataclasses

    from chaperone.models.pool import ModelHandle

    conv, events, _ = conversation(chunked_project(project_factory))
    monkeypatch.setattr(ModelHandle, "serial", property(lambda self: True))
    chat = conv.chat
    chat.reviewer.model = dataclasses.replace(chat.reviewer.model, client=chat.assistant.model.client)
    await conv.send("Say something friendly.")
    assert not of(events, ChunkVerdict) and not of(events, Released)
    assert of(events, VerdictEvent)  # reviewed whole (the assistant's words are no verdict: fail closed)


async def test_a_cancelled_turn_withdraws_what_it_showed(project_factory):
    import asyncio

    conv, events, _ = conversation(chunked_project(project_factory, chunks={"min_tokens": 1, "max_tokens": 200}))
    words = [w + " " for w in SAFE.split(" ") if w]
    client = EndlessClient(conv.chat.assistant.model.client.spec, words)
    conv.chat.assistant.model.client = client
    turn = asyncio.ensure_future(conv.send("Tell me about pets."))
    while not of(events, Released):
        await asyncio.sleep(0)
    turn.cancel()
    with pytest.raises(asyncio.CancelledError):
        await turn
    [withdrawn] = of(events, Withdrawn)
    assert withdrawn.content == "".join(r.content for r in of(events, Released))
    assert of(events, Withheld)[0].reason == "turn cancelled"


class DriftingClient(ScriptedChatCompletionClient):
    """Streams one text and reports another as its result (a backend whose final content is not its pieces)."""

    async def create_stream(self, messages, **kwargs):
        result = None
        async for item in super().create_stream(messages, **kwargs):
            if isinstance(item, CreateResult):
                result = item
            else:
                yield item
        yield CreateResult(finish_reason="stop", content="Something else entirely.", usage=result.usage, cached=False)


async def test_shown_text_the_answer_does_not_continue_is_withdrawn_before_delivery(project_factory):
    conv, events, _ = conversation(chunked_project(project_factory))
    conv.chat.assistant.model.client = DriftingClient(conv.chat.assistant.model.client.spec)
    result = await conv.send("Say something friendly.")
    assert result.outcome == "approved" and result.text == "Something else entirely."
    [withdrawn] = of(events, Withdrawn)
    assert withdrawn.reason == "the answer does not continue the text shown"
    [delivered] = of(events, Delivered)
    assert delivered.released == 0 and events.index(withdrawn) < events.index(delivered)


def reviewer_also_rejecting(conv, word: str) -> None:
    """The scripted reviewer, also sending back any draft with `word` (which the test places in its last sentence)."""
    from chaperone.config.schema import ScriptedModelSpec
    from tests.support.chunked import REVIEWER

    rules = [*REVIEWER["rules"], {"match": [word], "categories": ["violence"], "critique": f"No {word}."}]
    conv.chat.reviewer.model.client = ScriptedChatCompletionClient(ScriptedModelSpec(**{**REVIEWER, "rules": rules}))


@pytest.mark.parametrize("stream", [False, True])
async def test_a_whole_draft_sent_back_after_its_prefixes_passed_withdraws_them(project_factory, stream):
    conv, events, _ = conversation(chunked_project(project_factory))
    reviewer_also_rejecting(conv, "companions")  # only in the last sentence, which no chunk review reads
    if stream:
        conv.stream_to(lambda event: None)
    result = await conv.send("Say something friendly.")
    assert of(events, Released)[0].content == "Dogs are loyal friends."
    first = of(events, Withdrawn)[0]
    assert first.reason == "the reviewer sent back the whole draft" and first.round == 1
    assert not result.delivered
    if stream:  # a stream cannot show a revision after text it showed: the turn ends with the fallback
        assert len(of(events, Draft)) == 1 and result.reason == "text already shown was withdrawn"
    else:  # the chat revises (the scripted assistant writes the same again: withheld after max_revisions)
        assert len(of(events, Draft)) == conv.max_revisions + 1 and result.reason == "revisions exhausted"
        assert len(of(events, Withdrawn)) == len(of(events, Draft))


async def test_each_draft_keeps_one_fence_nonce_so_every_review_message_extends_the_one_before(project_factory):
    """A draft's chunk verdicts and its whole-draft verdict quote it under one nonce: each review message then
    starts with the previous one up to the end of the prefix quoted there, which is what lets the reviewer's
    context reuse its cache and read only the new text. A revision is a new draft with a new nonce."""
    import itertools
    import re

    conv, events, _ = conversation(chunked_project(project_factory))
    client = conv.chat.reviewer.model.client
    seen: list[str] = []
    create = client.create

    async def recording(messages, **kwargs):
        seen.append(messages[-1].content)
        return await create(messages, **kwargs)

    client.create = recording
    result = await conv.send("Tell me about pets, and how to get rid of the dog next door.")
    conv.close()
    assert result.outcome == "approved" and result.revisions == 1

    fences = [re.search(r"<<<DRAFT ([0-9a-f]+)>>>", m) for m in seen]
    reviews = [(f.group(1), m) for f, m in zip(fences, seen, strict=True) if f]
    nonces = [n for n, _ in reviews]
    assert len(set(nonces)) == 2, nonces  # one per draft: the stopped one and its revision
    first, second = nonces[0], nonces[-1]
    assert nonces == [first] * nonces.count(first) + [second] * nonces.count(second)
    assert nonces.count(second) == len([v for v in of(events, ChunkVerdict) if v.round == 2]) + 1  # + the whole
    for (n1, before), (n2, after) in itertools.pairwise(reviews):
        if n1 == n2:
            assert after.startswith(before.split("\n<<<END DRAFT")[0])
