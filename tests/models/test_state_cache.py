"""The saved-state cache keeps one logits row per state and counts every byte it holds (fast: no model).

The states here are stand-ins shaped like llama_cpp.LlamaState: a KV copy of `llama_state_size` bytes, a
`scores` array (rows x vocabulary) and the token ids."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from chaperone.models.state_cache import LastRowStateCache, held_bytes

VOCAB = 1000  # 4,000 bytes a row


def state(tokens: list[int], rows: int = 8, kv: int = 10_000, fill: float = 0.0) -> SimpleNamespace:
    scores = np.full((rows, VOCAB), fill, dtype=np.single)
    scores[-1] = fill + 1.0  # the last row is recognisable
    return SimpleNamespace(
        input_ids=np.array(tokens + [0] * (16 - len(tokens)), dtype=np.intc),
        scores=scores,
        n_tokens=len(tokens),
        llama_state=b"\0" * kv,
        llama_state_size=kv,
        seed=42,
    )


def test_a_saved_state_keeps_only_its_last_logits_row_and_the_caller_keeps_its_own():
    cache = LastRowStateCache(capacity_bytes=1 << 20)
    saved = state([1, 2, 3], rows=8, fill=2.0)
    cache[[1, 2, 3]] = saved
    kept = cache[[1, 2, 3, 4]]  # a longer prompt finds it by its prefix
    assert kept.scores.shape == (1, VOCAB)
    assert np.all(kept.scores[0] == 3.0)  # the last row, not the first
    assert kept.scores.base is None  # a copy: the full buffer is not held through a view
    assert saved.scores.shape == (8, VOCAB)  # the caller's state is not changed
    assert (kept.n_tokens, kept.llama_state_size, kept.seed) == (3, 10_000, 42)
    assert np.array_equal(kept.input_ids, saved.input_ids)


def test_the_size_counts_the_kv_copy_the_logits_row_and_the_token_ids():
    cache = LastRowStateCache(capacity_bytes=1 << 20)
    cache[[1]] = state([1], rows=8)
    cache[[2]] = state([2], rows=1)
    one = 10_000 + VOCAB * 4 + 16 * 4
    assert cache.cache_size == 2 * one
    assert cache.cache_size == sum(held_bytes(s) for s in cache.cache_state.values())


def test_the_capacity_bounds_what_is_really_held_least_recently_used_first():
    one = 10_000 + VOCAB * 4 + 16 * 4
    cache = LastRowStateCache(capacity_bytes=2 * one)  # room for two states, not three
    cache[[1, 1]] = state([1, 1])
    cache[[2, 2]] = state([2, 2])
    assert cache[[1, 1, 5]].n_tokens == 2  # a hit makes [1, 1] the most recently used
    cache[[3, 3]] = state([3, 3])
    assert set(cache.cache_state) == {(1, 1), (3, 3)}
    assert cache.cache_size == 2 * one <= cache.capacity_bytes


def test_replacing_a_key_does_not_count_it_twice():
    cache = LastRowStateCache(capacity_bytes=1 << 20)
    cache[[1, 2]] = state([1, 2], kv=10_000)
    cache[[1, 2]] = state([1, 2], kv=20_000)
    assert len(cache.cache_state) == 1
    assert cache.cache_size == 20_000 + VOCAB * 4 + 16 * 4


def test_a_snapshot_restored_holds_its_states_again_and_counts_their_bytes():
    cache = LastRowStateCache(capacity_bytes=1 << 20)
    cache[[1]] = state([1], kv=10_000)
    kept, size = cache.snapshot(), cache.cache_size
    cache[[2]] = state([2], kv=20_000)
    del cache.cache_state[(1,)]  # the snapshot is a copy: changing the cache does not change it
    cache.restore(kept)
    assert list(cache.cache_state) == [(1,)] and cache.cache_size == size
    cache[[3]] = state([3])  # and restoring twice from one snapshot gives the same
    cache.restore(kept)
    assert list(cache.cache_state) == [(1,)] and cache.cache_size == size


def test_a_state_larger_than_the_capacity_is_not_kept():
    cache = LastRowStateCache(capacity_bytes=5_000)
    cache[[1]] = state([1], kv=10_000)
    assert len(cache.cache_state) == 0 and cache.cache_size == 0
    with pytest.raises(KeyError):
        cache[[1]]


def test_one_row_is_what_load_state_broadcasts_over_the_restored_positions():
    """llama-cpp-python 0.3.36 `load_state`: `self.scores[: state.n_tokens, :] = state.scores.copy()`."""
    cache = LastRowStateCache(capacity_bytes=1 << 20)
    cache[[1, 2, 3]] = state([1, 2, 3], rows=3, fill=2.0)
    live = np.zeros((8, VOCAB), dtype=np.single)  # the context's buffer: n_batch rows
    item = cache[[1, 2, 3]]
    live[: item.n_tokens, :] = item.scores.copy()
    assert np.all(live[2] == 3.0)  # the last restored position holds the saved last row


@pytest.mark.slow
async def test_on_the_real_model_a_restored_state_gives_the_same_answer_and_scores():
    """A state saved with one logits row is restored (a cache hit) and the reply and option scores are the ones
    the context computed before another prompt evicted them."""
    from autogen_core.models import SystemMessage, UserMessage

    from chaperone.models.embedded import EmbeddedChatCompletionClient
    from chaperone.models.gguf import ensure_model

    client = EmbeddedChatCompletionClient(ensure_model(), n_ctx=2048, n_threads=2, state_cache_mb=64)
    try:
        system = SystemMessage(content="You answer in one short sentence. " * 20)  # a prefix worth restoring
        ask = [system, UserMessage(content="Name a colour of the sky.", source="u")]
        other = [SystemMessage(content="You count."), UserMessage(content="Count to five.", source="u")]
        args = {"max_tokens": 12, "temperature": 0.0}
        first = await client.create(ask, extra_create_args=args)
        scores, _ = await client.option_logprobs(ask, "The sky is ", ["blue", "green"])
        await client.create(other, extra_create_args=args)  # the context now holds another prompt
        loads = client.stats.state_loads
        again = await client.create(ask, extra_create_args=args)
        assert client.stats.state_loads > loads  # restored from the cache, not re-read
        assert again.content == first.content
        await client.create(other, extra_create_args=args)
        loads = client.stats.state_loads
        scores_again, _ = await client.option_logprobs(ask, "The sky is ", ["blue", "green"])
        assert client.stats.state_loads > loads
        # The scores come from the llama.cpp context's logits, never from the saved rows; llama.cpp evaluates a
        # different number of tokens after a restore (batch split), which moves log-probabilities by a few
        # hundredths (seen: 0.035 and 0.075), so only the order and the rough value are fixed here.
        assert max(scores_again, key=scores_again.get) == max(scores, key=scores.get)
        assert scores_again == pytest.approx(scores, abs=0.15)
        cache = client.llm.cache
        assert all(s.scores.shape[0] == 1 for s in cache.cache_state.values())
        assert cache.cache_size == sum(held_bytes(s) for s in cache.cache_state.values()) <= 64 << 20
    finally:
        await client.close()
