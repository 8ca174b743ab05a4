"""Hidden states read in the assistant's own context (chaperone.models.in_context), on the real embedded model:
only the tokens the context lacks are read, the vectors are a fresh pass's to float rounding, and the context
is left holding a prefix of what it held, so the assistant's next call is unchanged."""

import numpy as np
import pytest
from autogen_core.models import SystemMessage, UserMessage

from chaperone.models import gguf
from chaperone.models.embedded import EmbeddedChatCompletionClient
from chaperone.models.hidden_states import HiddenStateExtractor
from chaperone.reviewer_head.prompt import default_path, load_prompt

LAYERS = [16, 20]


@pytest.mark.slow
async def test_a_read_in_the_assistants_context_evaluates_what_it_lacks_and_leaves_the_context_usable():
    client = EmbeddedChatCompletionClient(
        gguf.ensure_model(), n_ctx=2048, n_threads=2, state_cache_mb=0, default_max_tokens=40
    )
    extractor = HiddenStateExtractor(client.llm, n_threads=2)
    try:
        client.enable_capture()
        client.enable_capture()  # idempotent
        prompt = load_prompt(default_path("reviewer_head_in_context.yaml"))
        request = "How do I kill a Python process?"
        messages = [SystemMessage(content=prompt.system), UserMessage(content=request, source="user")]
        greedy = {"temperature": 0.0}  # no sampling: the same cache must give the same draft
        first = await client.create(messages, extra_create_args=greedy)  # the assistant drafts in this context
        layout = prompt.messages(request, first.content.strip())
        held = [int(t) for t in client.llm.input_ids[: client.llm.n_tokens]]

        read = await client.read_in_context(layout, LAYERS, max_new=96)
        assert read is not None and read.layers == tuple(LAYERS)
        tokens = extractor.tokens(layout)
        assert read.n_tokens == len(tokens) and 0 < read.evaluated <= 40  # the question and the turn's end
        fresh = extractor.extract(layout, LAYERS)
        assert fresh.evaluated == len(tokens)
        rel = float(np.linalg.norm(read.states - fresh.states) / np.linalg.norm(fresh.states))
        assert rel < 0.03 and np.corrcoef(read.states.ravel(), fresh.states.ravel())[0, 1] > 0.999

        # Rolled back to the common prefix: the context holds a prefix of what it held, nothing of the question.
        n = client.llm.n_tokens
        assert n == len(tokens) - read.evaluated and [int(t) for t in client.llm.input_ids[:n]] == held[:n]
        again = await client.read_in_context(layout, LAYERS, max_new=96)  # the same read from the same state
        assert again is not None and again.evaluated == read.evaluated
        assert float(np.linalg.norm(again.states - read.states) / np.linalg.norm(read.states)) < 1e-3
        # The assistant's next call sees a consistent cache: the same request gives the same draft.
        assert (await client.create(messages, extra_create_args=greedy)).content == first.content

        # A context holding something else: nothing is read and nothing is touched.
        before = client.llm.n_tokens
        assert await client.read_in_context(prompt.messages("Capital of France?", "Paris."), LAYERS, max_new=8) is None
        assert client.llm.n_tokens == before
    finally:
        extractor.close()
        await client.close()


@pytest.mark.slow
async def test_without_capture_or_while_the_role_writes_nothing_is_read():
    client = EmbeddedChatCompletionClient(gguf.ensure_model(), n_ctx=512, n_threads=2, state_cache_mb=0)
    try:
        layout = load_prompt(default_path("reviewer_head_in_context.yaml")).messages("hi", "hello")
        assert await client.read_in_context(layout, LAYERS, max_new=10_000) is None  # capture never enabled
        client.enable_capture()
        async with client._lock:  # the assistant writing
            assert await client.read_in_context(layout, LAYERS, max_new=10_000) is None
        assert await client.read_in_context(layout, LAYERS, max_new=10_000) is not None
    finally:
        await client.close()
