"""Chunk verdicts from the draft's own token states: a chunk head (issue 15; docs/reviewer-head.md).

Under chunked review every chunk verdict of the in-context head reads the end of the assistant's turn and a
question after the text it judges (~25 tokens, and it pauses the draft or competes with it for the cores). A
chunk head reads nothing: while the assistant writes, its context computes a hidden state for every draft
token anyway (models/draft_states.py records the head's layer), and the head scores the state of the token that
ends the chunk. It judges chunks only: the finished draft still gets the whole-draft verdict of the reviewer's
own head before anything is approved.

Used only where its states mean what they meant in training: the assistant on the embedded model (the GGUF its
card names), writing in the context the reviewer can read, under the system prompt its card names. Anywhere
else chunk verdicts are read as before, and a head that was named but cannot be used says why in one warning.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from chaperone.config.schema import AgentSpec, EmbeddedModelSpec
from chaperone.engine.head_decision import mtime_ns, warn_once
from chaperone.models import gguf
from chaperone.models.pool import ModelHandle
from chaperone.reviewer_head.head import OVERALL, HeadError, ReviewerHead, load_head

LAYOUT = "in-draft-v1"  # the assistant's conversation, its turn open, the draft's tokens: no end, no question


def layout_sha256(system: str, max_draft_chars: int) -> str:
    """The name of the layout a chunk head was trained on (its card's prompt sha256)."""
    canonical = json.dumps({"layout": LAYOUT, "system": system, "max": max_draft_chars}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class ChunkScore:
    """One chunk's score and what it was read from (the verdict's raw record keeps it)."""

    not_ok: float
    threshold: float
    path: str
    position: int  # the token whose state was scored, as a position in the assistant's context

    @property
    def readable(self) -> bool:
        return isinstance(self.not_ok, float) and math.isfinite(self.not_ok)

    @property
    def send_back(self) -> bool:
        return not self.readable or self.not_ok >= self.threshold  # fail closed: no number is no approval

    def record(self) -> dict[str, Any]:
        return {
            "ok_to_send": "no" if self.send_back else "yes",
            "decided_by": "chunk_head",
            "chunk_head": self.path,
            "scores": {OVERALL: round(self.not_ok, 4) if self.readable else str(self.not_ok)},
            "threshold": self.threshold,
            "read": {"in": "draft_tokens", "position": self.position, "evaluated": 0},
        }


@dataclass
class ChunkHead:
    head: ReviewerHead
    path: str
    system: str  # the assistant's system prompt the head was trained under
    threshold: float
    context: Any  # the embedded client whose context the assistant writes in

    @property
    def layers(self) -> list[int]:
        return self.head.layers

    def reads(self, model: ModelHandle, system_prompt: str | None) -> bool:
        """Whether this draft's states are the ones the head was trained on: written in `context`, under its
        system prompt."""
        return model.client is self.context and (system_prompt or "").strip() == self.system.strip()

    def score(self, states: Mapping[int, np.ndarray], position: int, threshold: float | None = None) -> ChunkScore:
        """The chunk's score from its last token's states, held against `threshold` (the policy's) or the card's."""
        try:
            p = float(self.head.score(states)[OVERALL])
        except (HeadError, ValueError, KeyError):
            p = math.nan
        chosen = self.threshold if threshold is None else threshold
        return ChunkScore(not_ok=p, threshold=chosen, path=self.path, position=position)


def load_for(spec: AgentSpec, handle: ModelHandle, root: Path) -> ChunkHead | None:
    """The chunk head the reviewer's agent file names, or None (chunk verdicts read as before). `handle` is the
    reviewer's model: the head is used only on the embedded model, reading the context the assistant writes in
    (its weights owner's)."""
    named = spec.chunk_head
    if named is None or not isinstance(handle.spec, EmbeddedModelSpec):
        return None
    owner = getattr(handle.client, "weights_owner", None)
    if owner is None or not hasattr(owner, "enable_capture"):
        warn_once(f"reviewer {spec.name}: model {handle.name} gives no draft states; chunk verdicts read as before")
        return None
    path = root / named
    try:
        head = _loaded(path)  # refused unless its card names this GGUF and the layout of the system it names
        system = str(head.card["prompt"]["system"])
        card_threshold = float(head.card["threshold"])
    except (HeadError, KeyError, TypeError, ValueError) as exc:
        warn_once(f"reviewer {spec.name}: chunk head not used ({exc}); chunk verdicts read as before")
        return None
    owner.enable_capture()
    return ChunkHead(head=head, path=named, system=system, threshold=card_threshold, context=owner)


_LOADED: dict[tuple, ReviewerHead] = {}


def _loaded(path: Path) -> ReviewerHead:
    card = path.with_suffix(".json")
    key = (str(path), mtime_ns(path), str(card), mtime_ns(card))
    if key not in _LOADED:
        try:
            prompt = json.loads(card.read_text(encoding="utf-8"))["prompt"]
            system, chars = str(prompt["system"]), int(prompt["max_draft_chars"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise HeadError(f"{card}: not a readable chunk head card ({exc})") from None
        _LOADED[key] = load_head(path, model_sha256=gguf.GGUF_SHA256, prompt_sha256=layout_sha256(system, chars))
    return _LOADED[key]


def system_prompt_of(messages: Sequence[Any]) -> str | None:
    """The system message's text of an LLM message list (the assistant's prompt), if it has one first."""
    first = messages[0] if messages else None
    content = getattr(first, "content", None)
    return content if type(first).__name__ == "SystemMessage" and isinstance(content, str) else None
