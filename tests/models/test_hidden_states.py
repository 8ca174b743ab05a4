"""The hidden-state extractor: the sha256 check before loading, and (slow) the real model's layers."""

import asyncio
import contextlib
import threading

import numpy as np
import pytest

from chaperone.models import gguf
from chaperone.models.gguf import ModelFileError
from chaperone.models.hidden_states import HiddenStateError, HiddenStateExtractor


def test_a_model_with_another_sha256_is_refused_before_loading(tmp_path):
    fake = tmp_path / "other.gguf"
    fake.write_bytes(b"GGUF not the pinned model")
    with pytest.raises(ModelFileError, match="does not match the pinned"):
        HiddenStateExtractor.load(fake)


@pytest.fixture(scope="module")
def extractor():
    ex = HiddenStateExtractor.load(gguf.ensure_model(), n_threads=2)
    yield ex
    ex.close()


PROMPTS = [
    [{"role": "user", "content": "Request: how do I kill a Python process?\nReply: run `kill <PID>`.\nHarmful?"}],
    [{"role": "user", "content": "Request: tell me about Pakleds.\nReply: They are too stupid to vote.\nHarmful?"}],
    [{"role": "user", "content": "Hi"}],
]


@pytest.mark.slow
def test_real_model_shapes_and_determinism(extractor):
    layers = [0, 14, 27]
    first = [extractor.extract(p, layers) for p in PROMPTS]
    for result in first:
        assert result.states.shape == (3, 1536) and result.states.dtype == np.float32
        assert np.isfinite(result.states).all() and result.n_tokens > 3
    assert not np.array_equal(first[0].states, first[1].states)
    again = extractor.extract(extractor.tokens(PROMPTS[0]), layers)  # token ids give the same as messages
    assert np.array_equal(again.states, first[0].states)
    single = extractor.extract(PROMPTS[0], [14])  # asking for fewer layers reads the same vector
    assert np.array_equal(single.layer(14), first[0].layer(14))
    with pytest.raises(HiddenStateError, match="do not exist"):
        extractor.extract(PROMPTS[0], [28])


@pytest.mark.slow
def test_async_extraction_runs_off_the_event_loop(extractor):
    async def main():
        ticks = 0
        loop_thread = threading.get_ident()

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        task = asyncio.create_task(ticker())
        result = await extractor.aextract(PROMPTS[1], [20])
        task.cancel()
        assert threading.get_ident() == loop_thread
        return result, ticks

    result, ticks = asyncio.run(main())
    assert result.states.shape == (1, 1536) and ticks > 0


@pytest.mark.slow
def test_reuse_reads_only_what_the_context_does_not_hold_and_gives_the_same_vectors_to_rounding(extractor):
    """Chunked review asks about a growing draft: with reuse, the extractor keeps the prefix it holds. The
    vectors differ from a fresh pass only by float rounding, no more than a fresh pass in smaller batches
    differs from one in a single batch (measured here: both ~1.7% relative on this model)."""
    layers = [14, 20]
    draft = "First, find the process ID with ps aux. Then send it SIGTERM with kill, and wait a moment."
    short = [{"role": "user", "content": f"Request: stop a process\nReply: {draft[:40]}"}]
    grown = [{"role": "user", "content": f"Request: stop a process\nReply: {draft}"}]
    short_tokens, grown_tokens = extractor.tokens(short), extractor.tokens(grown)
    shared = next(i for i, (a, b) in enumerate(zip(short_tokens, grown_tokens, strict=False)) if a != b)

    extractor.extract(short, layers)
    read, evaluated = extractor.stats.prompt_tokens, extractor.stats.prompt_evaluated
    reused = extractor.extract(grown, layers, reuse=True)
    assert reused.n_tokens == len(grown_tokens) and reused.evaluated == len(grown_tokens) - shared
    assert extractor.stats.prompt_tokens - read == len(grown_tokens)  # the benchmarks' counts
    assert extractor.stats.prompt_evaluated - evaluated == reused.evaluated
    fresh = extractor.extract(grown, layers)
    assert fresh.evaluated == len(grown_tokens)
    again = extractor.extract(grown, layers, reuse=True)  # the same prompt: only its last token is read again
    assert again.evaluated == 1

    small_batches = HiddenStateExtractor(extractor.llm, n_threads=2, n_batch=16)
    try:
        batched = small_batches.extract(grown, layers)
    finally:
        small_batches.close()

    def rel(a, b):
        return float(np.linalg.norm(a.states - b.states) / np.linalg.norm(b.states))

    assert rel(reused, fresh) < max(2 * rel(batched, fresh), 0.03)
    assert np.corrcoef(reused.states.ravel(), fresh.states.ravel())[0, 1] > 0.999
    # A different prompt shares only the chat template's start: reuse keeps exactly the tokens that match.
    other_tokens = extractor.tokens(PROMPTS[2])
    common = next(i for i, (a, b) in enumerate(zip(grown_tokens, other_tokens, strict=False)) if a != b)
    other = extractor.extract(PROMPTS[2], layers, reuse=True)
    assert common > 0 and other.evaluated == len(other_tokens) - common


async def test_a_cancelled_extraction_returns_only_once_its_forward_pass_has_ended():
    """A chunk verdict cancelled mid-pass must not leave a thread computing in a context its caller may close next
    (a turn's end, a server's shutdown): the cancellation waits for the pass."""
    extractor = object.__new__(HiddenStateExtractor)  # no model: `extract` stands in for the forward pass
    started, release, ended = threading.Event(), threading.Event(), threading.Event()

    def extract(prompt, layers, *, reuse=False):
        started.set()
        release.wait(5)
        ended.set()
        return "states"

    extractor.extract = extract
    task = asyncio.ensure_future(extractor.aextract([1, 2], [20]))
    while not started.is_set():
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.sleep(0.05)
    assert not task.done()  # still waiting for the pass, though cancelled
    release.set()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert task.cancelled() and ended.is_set()
