"""Where a draft being written is cut for review: sentence ends once a chunk holds min_tokens, spaces at
max_tokens, and (with growth) later chunks that wait for more text, never past max_tokens."""

from chaperone.config.schema import ChunkSpec
from chaperone.engine.chunking import ChunkCutter, sentence_ends


def _cuts(spec: ChunkSpec, pieces: list[str]) -> list[str]:
    """The chunks the cutter closes while the pieces arrive one by one (the text after the last cut is left)."""
    cutter, text, chunks, last = ChunkCutter(spec), "", [], 0
    for piece in pieces:
        text += piece
        cut = cutter.feed(text)
        if cut is not None:
            chunks.append(text[last:cut])
            last = cut
    return chunks


SENTENCES = ["One ", "two ", "three. "] * 12  # twelve sentences of three pieces each


def test_a_chunk_closes_at_the_first_sentence_end_once_it_holds_min_tokens():
    cutter, text, cut_at = ChunkCutter(ChunkSpec(min_tokens=5, max_tokens=40, growth=1.0)), "", []
    for n, piece in enumerate(SENTENCES, 1):
        text += piece
        if (cut := cutter.feed(text)) is not None:
            cut_at.append(n)
            assert text[:cut].endswith("three. ")  # at a sentence end, never mid-sentence
    # Not at the 5th piece, though a sentence had ended by then: a chunk of 3 pieces would be under min_tokens.
    assert cut_at == [6, 12, 18, 24, 30, 36]  # two sentences a chunk: short sentences are judged together


def test_a_lists_numbers_and_abbreviations_end_no_sentence():
    pieces = ["1", ".", " Prepare", " well", ".", "\n", "2", ".", " Dress", " e", ".g", ".", " smart", ".", " Then"]
    chunks = _cuts(ChunkSpec(min_tokens=2, max_tokens=40, growth=1.0), pieces)
    assert chunks == ["1. Prepare well.\n", "2. Dress e.g. smart. "]
    assert sentence_ends("It costs 3. Plan A. Dr. Who left. ") == [12, 20, 34]


def test_with_no_sentence_end_a_chunk_closes_at_max_tokens_on_a_space():
    chunks = _cuts(ChunkSpec(min_tokens=2, max_tokens=4), ["alpha ", "beta ", "gam", "ma ", "delta ", "eps"])
    assert chunks == ["alpha beta gamma "]  # the 4th piece ends a word; the text after it waits for the next cut


def test_growth_lets_later_chunks_hold_more_but_never_past_max_tokens():
    steady = _cuts(ChunkSpec(min_tokens=3, max_tokens=12, growth=1.0), SENTENCES)
    growing = _cuts(ChunkSpec(min_tokens=3, max_tokens=12, growth=2.0), SENTENCES)
    assert [c.count(".") for c in steady] == [1] * 12  # every sentence judged alone
    assert [c.count(".") for c in growing] == [1, 2, 4, 4]  # min_tokens 3, 6, 12, then held at max_tokens 12
    assert growing[0] == steady[0]  # the first approved text comes as early as without growth
    assert len(growing) < len(steady)
