"""Where a draft being written is cut for chunked review: at sentence ends, with a token-count fallback.

The cutter sees the draft grow piece by piece (a streamed piece stands for a token, as the live views count
them) and says where a chunk closes. It never looks at what the text means: it only decides how often the
reviewer is asked, never what it is shown (always the whole draft so far).
"""

from __future__ import annotations

import bisect
import math
import re

from chaperone.config.schema import ChunkSpec

# A sentence ends at . ! ? or … (closing quotes and brackets after it included) followed by white space, or
# at a line break. The white space is part of the chunk: the boundary is where the next sentence starts.
# A "3.14" or "e.g.x" is no end: the stop must be followed by white space, which arrives with a later piece.
_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]»]*\s+|\n\s*")
# A full stop that ends no sentence: a list's number or letter alone at the start of a line ("1. ", "b. ",
# "iv. ") and a few abbreviations. Cut there, a chunk would be "1." alone: the reviewer judged a list's number.
_ENUMERATOR = re.compile(r"[ \t]*(?:\d{1,3}|[A-Za-z]|[ivxIVX]{2,4})")
_ABBREVIATION = re.compile(r"\b(?:e\.g|i\.e|vs|Mr|Mrs|Ms|Dr|St)$")


def _ends_a_sentence(text: str, m: re.Match) -> bool:
    if m.group().startswith("\n"):
        return True
    line = text[text.rfind("\n", 0, m.start()) + 1 : m.start()]  # the line up to the stop
    return not (_ENUMERATOR.fullmatch(line) or _ABBREVIATION.search(line))


def sentence_ends(text: str, start: int = 0) -> list[int]:
    """Offsets in `text` (from `start`) where a sentence ends, white space after it included."""
    return [m.end() for m in _SENTENCE_END.finditer(text, start) if _ends_a_sentence(text, m)]


class ChunkCutter:
    """One draft's chunk boundaries, as character offsets into the draft so far."""

    def __init__(self, spec: ChunkSpec):
        self.spec = spec
        self.start = 0  # where the open chunk starts
        self.piece_ends: list[int] = []  # where each piece since then ends, as offsets into the draft
        self.min_tokens = spec.min_tokens  # the open chunk's; grows by spec.growth after each cut

    @property
    def tokens(self) -> int:
        """Pieces in the open chunk (a piece the last cut went through counts here too)."""
        return len(self.piece_ends)

    def _pieces_before(self, offset: int) -> int:
        """The open chunk's pieces that start before `offset`: what a chunk closing there would hold."""
        return bisect.bisect_left(self.piece_ends, offset) + 1

    def feed(self, text: str) -> int | None:
        """After one more piece: the offset where a chunk closes (the prefix to judge is text[:offset]), or None."""
        self.piece_ends.append(len(text))
        cut = None
        if self.tokens >= self.min_tokens:
            # The last sentence end that leaves the chunk holding min_tokens: short sentences are judged
            # together, and a sentence that ended early in the chunk does not close it alone.
            ends = [e for e in sentence_ends(text, self.start) if self._pieces_before(e) >= self.min_tokens]
            cut = ends[-1] if ends else None
        if cut is None and self.tokens >= self.spec.max_tokens:
            space = max(text.rfind(" ", self.start), text.rfind("\n", self.start))
            cut = space + 1 if space >= self.start else len(text)
        if cut is None or cut <= self.start:
            return None
        # A piece the cut went through (the start of the next sentence) already counts toward the next chunk.
        self.start = cut
        self.piece_ends = [e for e in self.piece_ends if e > cut]
        self.min_tokens = min(self.spec.max_tokens, math.ceil(self.min_tokens * self.spec.growth))
        return cut
