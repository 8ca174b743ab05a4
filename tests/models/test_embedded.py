"""The embedded client hands a read to its writing thread (chaperone.models.embedded + in_context), on a stand-in
Llama: the read runs in the thread that generates, between two tokens, and the draft goes on unchanged.
The real model's reads between tokens are in tests/models/test_in_context.py (slow)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from autogen_core.models import CreateResult, UserMessage

from chaperone.models import in_context
from chaperone.models.between_tokens import GenerationStateLost
from chaperone.models.embedded import EmbeddedChatCompletionClient
from chaperone.models.hidden_states import HiddenStateError
from chaperone.models.llama_contexts import ContextStats

PIECES = ["One", " two", ".", " Three", " four", ".", " Five", "."]


class FakeLlm:
    """Streams PIECES as llama-cpp-python's chat completion does (a role chunk first, one chunk per token), its
    token count growing as generation evaluates them; `pause` slows it so a read can be handed in mid-draft."""

    def __init__(self, pause: float = 0.02):
        self.pause, self.n_tokens, self.thread = pause, 0, None
        self._chaperone_prompt_pending = False

    def create_chat_completion(self, **args):
        self.thread = threading.current_thread()
        self.n_tokens = 20  # the prompt, evaluated; the first token sampled, not yet evaluated
        yield {"choices": [{"delta": {"role": "assistant"}, "finish_reason": None}]}
        for i, piece in enumerate(PIECES):
            if i:
                self.n_tokens += 1  # the previous token, evaluated when the generator resumed
            time.sleep(self.pause)
            yield {"choices": [{"delta": {"content": piece}, "finish_reason": None}]}
        yield {"choices": [{"delta": {}, "finish_reason": "stop"}]}


def client_on(llm: FakeLlm, *, capture: bool = True) -> EmbeddedChatCompletionClient:
    client = EmbeddedChatCompletionClient.__new__(EmbeddedChatCompletionClient)
    client.llm, client.stats, client._lock = llm, ContextStats(), asyncio.Lock()
    client._default_max_tokens, client._seed = 50, 42
    client._total_usage = {"prompt_tokens": 0, "completion_tokens": 0}
    client._capture = object() if capture else None
    client._writing = None
    return client


@pytest.fixture
def reads(monkeypatch):
    """read_between_tokens replaced: records where, when and with which floor it ran."""
    seen: list[dict] = []

    def fake_read(llm, capture, tokens, layers, *, max_new, floor):
        seen.append({"thread": threading.current_thread(), "floor": floor, "n_tokens": llm.n_tokens})
        behaviour = seen[-1]["behaviour"] = reads_behaviour.pop(0) if reads_behaviour else "read"
        if behaviour == "fail":
            raise HiddenStateError("capture failed")
        if behaviour == "lost":
            raise GenerationStateLost("restore failed")
        return f"states at {llm.n_tokens}"

    reads_behaviour: list[str] = []
    monkeypatch.setattr(in_context, "read_between_tokens", fake_read)
    monkeypatch.setattr(in_context, "chat_tokens", lambda llm, messages: [1, 2, 3])
    return seen, reads_behaviour


async def write_and_read(client, *, while_writing=True):
    """Stream a draft; at its first sentence's end hand in one read and wait for it while the draft goes on."""
    text, result, read, asked = "", None, None, False
    async for item in client.create_stream([UserMessage(content="count", source="user")]):
        if isinstance(item, CreateResult):
            result = item
            continue
        text += item
        if text.count(".") == 1 and not asked:
            asked = True
            messages = [{"role": "user", "content": "x"}]
            read = await client.read_in_context(messages, [20], max_new=96, while_writing=while_writing)
    return text, result, read


async def test_a_read_while_the_role_writes_runs_in_the_writing_thread_between_two_tokens(reads):
    seen, _ = reads
    llm = FakeLlm()
    client = client_on(llm)
    text, result, read = await write_and_read(client)
    assert text == "".join(PIECES) and result.content == text  # the draft goes on, whole
    assert len(seen) == 1 and seen[0]["thread"] is llm.thread and seen[0]["thread"] is not threading.main_thread()
    assert seen[0]["floor"] == 20  # the prompt's end: the context held no generated token yet at the first chunk
    assert read == f"states at {seen[0]['n_tokens']}" and seen[0]["n_tokens"] >= 22
    assert client._writing is None  # the hand-off lives as long as the draft


async def test_a_read_asked_not_to_pause_the_writing_is_none_and_nothing_is_handed_in(reads):
    seen, _ = reads
    client = client_on(FakeLlm())
    text, result, read = await write_and_read(client, while_writing=False)
    assert read is None and seen == []  # the reviewer reads in its own context, alongside the writing
    assert text == "".join(PIECES) and result.content == text


async def test_a_read_that_fails_in_the_writing_thread_is_none_and_the_draft_goes_on(reads):
    seen, behaviour = reads
    behaviour.append("fail")
    client = client_on(FakeLlm())
    text, result, read = await write_and_read(client)
    assert read is None and len(seen) == 1  # the reviewer then reads in its own context
    assert text == "".join(PIECES) and result.finish_reason == "stop"


async def test_a_context_that_could_not_be_restored_stops_the_draft(reads):
    _, behaviour = reads
    behaviour.append("lost")
    client = client_on(FakeLlm())
    with pytest.raises(GenerationStateLost):
        await write_and_read(client)


async def test_without_capture_or_while_the_context_does_something_else_nothing_is_handed_in(reads):
    seen, _ = reads
    client = client_on(FakeLlm(), capture=False)
    text, _, read = await write_and_read(client)
    assert read is None and client._writing is None and text == "".join(PIECES)

    client = client_on(FakeLlm())
    async with client._lock:  # e.g. option scoring: no draft being written, nothing to hand a read to
        assert await client.read_in_context([{"role": "user", "content": "x"}], [20], max_new=96) is None
    assert seen == []


async def test_closing_frees_the_context_only_after_the_call_in_flight_has_ended():
    """A server stopped while a cancelled warm-up still read its prompt freed the context under the reading
    thread (a segmentation fault). The caller is cancelled twice: closing still waits for the pass."""
    events: list[str] = []
    started, release = threading.Event(), threading.Event()

    class Llm:
        def close(self):
            events.append("freed")

    def option_logprobs(messages, prefix, options):
        started.set()
        release.wait(5)
        events.append("pass ended")
        return {"yes": -0.1}, 3

    client = client_on(Llm(), capture=False)
    client._role_clients, client._extractor = [], None
    client._option_logprobs = option_logprobs
    call = asyncio.ensure_future(client.option_logprobs([], "x", ["yes"]))
    while not started.is_set():
        await asyncio.sleep(0.01)
    for _ in range(2):
        call.cancel()
        await asyncio.sleep(0.02)
    closing = asyncio.ensure_future(client.close())
    await asyncio.sleep(0.1)
    assert events == [] and not closing.done()
    release.set()
    await closing
    assert events == ["pass ended", "freed"] and call.cancelled()
