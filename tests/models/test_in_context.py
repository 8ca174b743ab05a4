"""Hidden states read in the assistant's own context (chaperone.models.in_context), on the real embedded model:
only the tokens the context lacks are read, the vectors are a fresh pass's to float rounding, and the context
is left holding a prefix of what it held, so the assistant's next call is unchanged. Reads between two tokens of
a draft being written leave the draft token for token as it would have been (slow), and the restore logic
puts back exactly what generation held (fast, on a stand-in for llama.cpp)."""

import numpy as np
import pytest
from autogen_core.models import CreateResult, SystemMessage, UserMessage

from chaperone.config.schema import ChunkSpec
from chaperone.engine.chunking import ChunkCutter
from chaperone.engine.head_decision import IN_CONTEXT_MAX_NEW
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


@pytest.mark.slow
async def test_chunk_reads_between_tokens_leave_a_greedy_draft_unchanged_and_match_a_fresh_read():
    """The same greedy draft written twice from a fresh context: once alone, once with the in-context head's read
    at every chunk boundary (as chunked review asks, while the draft is written). Token for token the same draft;
    each read evaluates only what the context lacks, and its vectors are a fresh pass's in the extractor's own
    context within the tolerance above."""
    client = EmbeddedChatCompletionClient(
        gguf.ensure_model(), n_ctx=2048, n_threads=2, state_cache_mb=0, default_max_tokens=90
    )
    extractor = HiddenStateExtractor(client.llm, n_threads=2)
    try:
        client.enable_capture()
        prompt = load_prompt(default_path("reviewer_head_in_context.yaml"))
        request = "Give three short tips for writing readable Python code, one sentence each."
        messages = [SystemMessage(content=prompt.system), UserMessage(content=request, source="user")]

        async def write(with_reads: bool):
            client.llm.n_tokens = 0  # from an empty cache both times: the same numbers from the first token on
            cutter, pieces, reads, result = ChunkCutter(ChunkSpec(min_tokens=4, max_tokens=12)), [], [], None
            async for item in client.create_stream(messages, extra_create_args={"temperature": 0.0}):
                if isinstance(item, CreateResult):
                    result = item
                    continue
                pieces.append(item)
                text = "".join(pieces).lstrip()
                cut = cutter.feed(text) if text else None
                if with_reads and cut is not None:
                    layout = prompt.messages(request, text[:cut].rstrip())
                    read = await client.read_in_context(layout, LAYERS, max_new=IN_CONTEXT_MAX_NEW)
                    reads.append((layout, read))
            held = [int(t) for t in client.llm.input_ids[: client.llm.n_tokens]]
            return pieces, held, reads, result

        alone, held_alone, _, first = await write(False)
        read_while, held_read, reads, second = await write(True)
        assert read_while == alone and held_read == held_alone  # token for token
        assert second.content == first.content and second.usage == first.usage

        done = [(layout, r) for layout, r in reads if r is not None]
        assert len(done) >= 2, f"only {len(done)} of {len(reads)} chunk reads were made while the draft was written"
        for layout, read in done:
            tokens = extractor.tokens(layout)
            assert read.n_tokens == len(tokens) and 0 < read.evaluated <= IN_CONTEXT_MAX_NEW
            fresh = extractor.extract(layout, LAYERS)
            rel = float(np.linalg.norm(read.states - fresh.states) / np.linalg.norm(fresh.states))
            assert rel < 0.03 and np.corrcoef(read.states.ravel(), fresh.states.ravel())[0, 1] > 0.999
        print("chunk reads (evaluated, restored):", [(r.evaluated, r.restored) for _, r in done])
    finally:
        extractor.close()
        await client.close()


# -- reads between two tokens of a draft being written: the restore logic, on a stand-in for llama.cpp ----------


class FakeLlama:
    """What read_between_tokens touches: input_ids/n_tokens as llama-cpp-python keeps them, and a KV cache (the
    tokens it holds, in order) that the patched llama.cpp calls below change."""

    def __init__(self, held):
        self.input_ids = np.array(list(held) + [0] * 16, dtype=np.intc)
        self.n_tokens = len(held)
        self.kv = list(held)
        self._ctx = type("Ctx", (), {"ctx": object()})()
        self._batch = object()
        self.n_batch = 512
        self.batches: list[list[int]] = []

    def n_ctx(self):
        return 64

    def n_embd(self):
        return 4


class FakeCapture:
    def __init__(self, fail=False):
        self.fail, self.armed = fail, None

    def arm(self, layers):
        self.armed = tuple(layers)

    def disarm(self):
        self.armed = None

    def states(self, layers, width):
        return np.ones((len(layers), width), dtype=np.float32)


@pytest.fixture
def fake_llama_cpp(monkeypatch):
    import llama_cpp

    from chaperone.models import in_context

    current: dict[str, FakeLlama] = {}

    def seq_rm(memory, seq, p0, p1):
        llm = current["llm"]
        del llm.kv[p0:]
        return True

    def decode(ctx, batch, tokens, start, n_batch, capture):
        llm = current["llm"]
        assert len(llm.kv) == start, "decoding where the KV cache does not end"
        if capture is not None and getattr(capture, "fail", False):
            raise in_context.HiddenStateError("llama.cpp refused")
        for first in range(start, len(tokens), n_batch):
            piece = list(tokens[first : first + n_batch])
            llm.batches.append(piece)
            llm.kv.extend(piece)

    monkeypatch.setattr(llama_cpp, "llama_get_memory", lambda ctx: None)
    monkeypatch.setattr(llama_cpp, "llama_memory_seq_rm", seq_rm)
    monkeypatch.setattr(in_context, "decode", decode)
    return current


PROMPT = [1, 2, 3, 4, 5]  # the generation's prompt: read in one batch
DRAFT = [10, 11, 12, 13, 14, 15]  # generated, evaluated one a batch (the last yielded one is not held yet)
QUESTION = [90, 91, 92]


def test_a_read_between_tokens_puts_back_exactly_what_the_generation_held(fake_llama_cpp):
    from chaperone.models.in_context import read_between_tokens

    held = PROMPT + DRAFT
    llm = fake_llama_cpp["llm"] = FakeLlama(held)
    ids_before = llm.input_ids.copy()
    # The chunk's prefix ends after 12; its re-tokenized end differs (77), then the end of turn and the question.
    tokens = [*PROMPT, 10, 11, 12, 77, *QUESTION]
    read = read_between_tokens(llm, FakeCapture(), tokens, [20], max_new=8, floor=len(PROMPT))
    assert read is not None and read.evaluated == 4 and read.n_tokens == len(tokens)
    assert read.restored == 3  # 13, 14, 15: dropped for the read, evaluated again
    assert llm.batches == [[77, *QUESTION], [13], [14], [15]]  # the read in one batch; the draft one at a time
    assert llm.kv == held and llm.n_tokens == len(held)
    assert (llm.input_ids == ids_before).all()  # llama-cpp-python's token record was never touched


def test_a_read_that_drops_nothing_restores_nothing(fake_llama_cpp):
    from chaperone.models.in_context import read_between_tokens

    held = PROMPT + DRAFT
    llm = fake_llama_cpp["llm"] = FakeLlama(held)
    read = read_between_tokens(llm, FakeCapture(), held + QUESTION, [20], max_new=8, floor=len(PROMPT))
    assert read is not None and read.evaluated == 3 and read.restored == 0
    assert llm.batches == [QUESTION] and llm.kv == held and llm.n_tokens == len(held)


@pytest.mark.parametrize(
    ("tokens", "max_new", "why"),
    [
        ([*PROMPT[:3], 66, 67, *QUESTION], 20, "would drop prompt tokens (read in a batch: not re-evaluated exactly)"),
        ([*PROMPT, 10, *list(range(100, 110)), *QUESTION], 8, "more new tokens than max_new"),
        ([*PROMPT, 66, *QUESTION], 4, "more of the draft dropped than max_new"),
    ],
)
def test_a_read_that_does_not_fit_touches_nothing(fake_llama_cpp, tokens, max_new, why):
    from chaperone.models.in_context import read_between_tokens

    held = PROMPT + DRAFT
    llm = fake_llama_cpp["llm"] = FakeLlama(held)
    assert read_between_tokens(llm, FakeCapture(), tokens, [20], max_new=max_new, floor=len(PROMPT)) is None, why
    assert llm.batches == [] and llm.kv == held and llm.n_tokens == len(held)


def test_a_read_that_fails_still_restores_the_context(fake_llama_cpp):
    from chaperone.models.hidden_states import HiddenStateError
    from chaperone.models.in_context import read_between_tokens

    held = PROMPT + DRAFT
    llm = fake_llama_cpp["llm"] = FakeLlama(held)
    with pytest.raises(HiddenStateError):
        read_between_tokens(llm, FakeCapture(fail=True), [*PROMPT, 10, 77, *QUESTION], [20], max_new=8, floor=5)
    assert llm.kv == held and llm.n_tokens == len(held)
    assert llm.batches == [[11], [12], [13], [14], [15]]


def test_a_context_that_cannot_be_restored_is_lost_for_the_generation(fake_llama_cpp, monkeypatch):
    from chaperone.models import in_context
    from chaperone.models.between_tokens import GenerationStateLost

    held = PROMPT + DRAFT
    llm = fake_llama_cpp["llm"] = FakeLlama(held)
    real = in_context.decode

    def decode(ctx, batch, tokens, start, n_batch, capture):
        if capture is None:
            raise RuntimeError("llama_decode returned 1")
        real(ctx, batch, tokens, start, n_batch, capture)

    monkeypatch.setattr(in_context, "decode", decode)
    with pytest.raises(GenerationStateLost):
        in_context.read_between_tokens(llm, FakeCapture(), [*PROMPT, 10, 77, *QUESTION], [20], max_new=8, floor=5)
