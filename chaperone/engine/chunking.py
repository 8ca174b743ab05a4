"""Where a draft being written is cut for chunked review: at sentence ends, with a token-count fallback.

The cutter sees the draft grow piece by piece (a streamed piece stands for a token, as the live views count
them) and says where a chunk closes. It never looks at what the text means: it only decides how often the
reviewer is asked, never what it is shown (always the whole draft so far).
"""

from __future__ import annotations

import math
import re

from chaperone.config.schema import ChunkSpec

# A sentence ends at . ! ? or … (closing quotes and brackets after it included) followed by white space, or
# at a line break. The white space is part of the chunk: the boundary is where the next sentence starts.
# A "3.14" or "e.g.x" is no end: the stop must be followed by white space, which arrives with a later piece.
_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]»]*\s+|\n\s*")


class ChunkCutter:
    """One draft's chunk boundaries, as character offsets into the draft so far."""

    def __init__(self, spec: ChunkSpec):
        self.spec = spec
        self.start = 0  # where the open chunk starts
        self.tokens = 0  # pieces since then
        self.min_tokens = spec.min_tokens  # the open chunk's; grows by spec.growth after each cut

    def feed(self, text: str) -> int | None:
        """After one more piece: the offset where a chunk closes (the prefix to judge is text[:offset]), or None."""
        self.tokens += 1
        cut = None
        if self.tokens >= self.min_tokens:
            # The last sentence end: short sentences since the previous cut are judged together.
            ends = [m.end() for m in _SENTENCE_END.finditer(text, self.start)]
            cut = ends[-1] if ends else None
        if cut is None and self.tokens >= self.spec.max_tokens:
            space = max(text.rfind(" ", self.start), text.rfind("\n", self.start))
            cut = space + 1 if space >= self.start else len(text)
        if cut is None or cut <= self.start:
            return None
        # The text after the cut (the start of the next sentence) already counts toward the next chunk.
        self.start, self.tokens = cut, int(cut < len(text))
        self.min_tokens = min(self.spec.max_tokens, math.ceil(self.min_tokens * self.spec.growth))
        return cut
