"""The hidden states of a draft's own tokens, recorded while it is written (chaperone.models.draft_states): on a
stand-in for llama.cpp (which token covers which byte, waiting, the first record winning) and, slow, on the real
embedded model: the states recorded during generation are a fresh pass's over the same tokens."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from autogen_core.models import CreateResult, SystemMessage, UserMessage

from chaperone.models import draft_states, gguf
from chaperone.models.draft_states import DraftStates
from chaperone.models.embedded import EmbeddedChatCompletionClient
from chaperone.models.hidden_states import HiddenStateExtractor


class _Llm:
    def __init__(self, pieces: dict[int, str]):
        self.pieces = pieces
        self._batch = type("B", (), {"batch": type("b", (), {"n_tokens": 1, "pos": [0], "token": [0]})()})()

    def detokenize(self, tokens):
        return "".join(self.pieces[t] for t in tokens).encode()

    def evaluate(self, draft: DraftStates, pos: int, token: int, value: float, layers=(3,)) -> None:
        self._batch.batch.pos, self._batch.batch.token = [pos], [token]
        for layer in layers:
            draft.record(layer, np.full(2, value, dtype=np.float32))


async def test_the_token_covering_a_byte_offset_gives_its_state_once_evaluated():
    llm = _Llm({10: "Hello", 11: ", wörld", 12: "."})
    draft = DraftStates([3])
    draft.begin(llm, 5, asyncio.get_running_loop())
    llm.evaluate(draft, 4, 99, -1.0)  # a prompt token: before the draft, never recorded
    llm.evaluate(draft, 5, 10, 1.0)
    assert draft.covering(5)[0] == 5 and draft.covering(1)[1][3][0] == 1.0
    assert draft.covering(6) is None  # ", wörld" not evaluated yet
    waiting = asyncio.ensure_future(draft.state_at(len("Hello, wö".encode())))
    await asyncio.sleep(0)
    assert not waiting.done()
    llm.evaluate(draft, 6, 11, 2.0)
    position, states = await asyncio.wait_for(waiting, 1)
    assert position == 6 and states[3][0] == 2.0
    llm.evaluate(draft, 6, 11, 9.0)  # evaluated again (a restore after a read): the first record stands
    assert draft.covering(6)[1][3][0] == 2.0


async def test_a_draft_that_ends_without_the_token_answers_none_and_a_token_needs_every_layer():
    llm = _Llm({1: "ab", 2: "cd"})
    draft = DraftStates([3, 5])
    draft.begin(llm, 0, asyncio.get_running_loop())
    llm.evaluate(draft, 0, 1, 1.0, layers=(3,))
    assert draft.covering(1) is None  # layer 5 not there yet
    llm.evaluate(draft, 0, 1, 1.0, layers=(5,))
    assert set(draft.covering(1)[1]) == {3, 5}
    waiting = asyncio.ensure_future(draft.state_at(4))
    await asyncio.sleep(0)
    draft.end()
    assert await asyncio.wait_for(waiting, 1) is None


@pytest.mark.slow
async def test_states_recorded_while_writing_are_a_fresh_pass_over_the_same_tokens():
    client = EmbeddedChatCompletionClient(
        gguf.ensure_model(), n_ctx=1024, n_threads=2, state_cache_mb=0, default_max_tokens=24
    )
    extractor = HiddenStateExtractor(client.llm, n_threads=2)
    try:
        client.enable_capture()
        messages = [SystemMessage(content="Answer briefly."), UserMessage(content="Name three rivers.", source="u")]
        draft = DraftStates([16, 20])
        text = ""
        async for item in client.create_stream(
            messages, extra_create_args={"temperature": 0.0, draft_states.ARG: draft}
        ):
            if not isinstance(item, CreateResult):
                text += item
        assert draft.ended and draft.start == len(client._chat_prompt(messages))
        found = draft.covering(len(text.encode()))  # the draft's last token: evaluated before the end of turn
        assert found is not None
        position, states = found
        tokens = [int(t) for t in client.llm.input_ids[: position + 1]]
        fresh = extractor.extract(tokens, [16, 20])
        for i, layer in enumerate((16, 20)):
            rel = np.linalg.norm(states[layer] - fresh.states[i]) / np.linalg.norm(fresh.states[i])
            assert rel < 0.03, (layer, rel)
        # After the draft nothing more is recorded: the capture stopped following it.
        assert client._capture.following is None
    finally:
        extractor.close()
        await client.close()
