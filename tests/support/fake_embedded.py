"""The embedded model's stand-ins, outside the system under test.

`ScoringClient`: replayed generations and scripted decision-token odds (the prompted decision), each call
recorded. `FakeEmbedded`, for head tests: the same with fixed odds, plus hidden states from a fake extractor;
a test module subclasses it with its own extractor (`extractor_type`) and default odds."""

from __future__ import annotations

import math
from typing import Any, ClassVar

from autogen_ext.models.replay import ReplayChatCompletionClient


class ScoringClient(ReplayChatCompletionClient):
    """Stands in for the embedded model: scripted P("yes"), P("no") after the verdict's opening."""

    def __init__(self, probabilities, replies=()):
        super().__init__(list(replies))
        self.probabilities = list(probabilities)
        self.scored = []

    async def option_logprobs(self, messages, prefix, options):
        self.scored.append((messages, prefix, tuple(options)))
        p_yes, p_no = self.probabilities.pop(0)
        return {"yes": math.log(p_yes), "no": math.log(p_no)}, 321

    def count_tokens(self, messages, **_):
        return sum(len(m.content) for m in messages) // 4


class FakeEmbedded(ReplayChatCompletionClient):
    extractor_type: ClassVar[type]
    default_p_not_ok: ClassVar[float] = 0.5

    def __init__(self, replies, vectors, p_not_ok: float | None = None):
        super().__init__(list(replies))
        self.extractor: Any = self.extractor_type(vectors)
        self.p_not_ok = self.default_p_not_ok if p_not_ok is None else p_not_ok
        self.scored = 0

    def hidden_state_extractor(self):
        return self.extractor

    async def option_logprobs(self, messages, prefix, options):
        self.scored += 1
        return {"yes": math.log(1 - self.p_not_ok), "no": math.log(self.p_not_ok)}, 300

    def count_tokens(self, messages, **_):
        return sum(len(m.content) for m in messages) // 4
