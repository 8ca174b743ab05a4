"""The reviewer's decision from a trained judgement head, where one exists (issue 14; docs/reviewer-head.md).

The embedded model reads the head's short fixed prompt (config/reviewer_head.yaml) once; the head turns the
last token's hidden states into a probability per category and an overall "not_ok"; the policy's `head`
section decides (`decide`): which categories send a draft back and from which score, and in which band of
"not_ok" the turn is flagged for a human. The prompted critique still writes what to fix, told which
categories the head flagged.

A head is used only by a reviewer on the embedded model whose agent file names a head whose card belongs to
that GGUF and that head prompt (`load_for`). Otherwise the reviewer keeps today's prompted decision; a head
that was named but cannot be used says why in one warning.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from loguru import logger

from chaperone.config.schema import AgentSpec, EmbeddedModelSpec, HeadPolicySpec, PolicySpec
from chaperone.models import gguf
from chaperone.models.hidden_states import HiddenStateError, PromptTooLong
from chaperone.models.pool import ModelHandle
from chaperone.reviewer_head.head import OVERALL, HeadError, ReviewerHead, load_head
from chaperone.reviewer_head.prompt import (
    REQUEST_PROMPT,
    AnyHeadPrompt,
    InContextPrompt,
    load_prompt,
    load_request_prompt,
)

DEFAULT_RULES = HeadPolicySpec()  # a policy without a `head` section: the overall score alone decides
MAX_CATEGORIES = 2  # as many as the prompted critique may name
MAX_CLIPS = 6  # attempts to fit the head's prompt into the extractor's context
# In the assistant's context, read at most this many tokens it does not hold (the question and the end of its
# turn are ~25; a draft whose re-tokenized end differs a little still fits); beyond it, the reviewer's own.
IN_CONTEXT_MAX_NEW = 96


class Extractor(Protocol):
    async def aextract(self, prompt: Sequence[Mapping[str, str]], layers: Sequence[int], *, reuse: bool) -> Any: ...


@dataclass
class HeadDecision:
    """What the head's scores mean under one policy."""

    send_back: bool
    categories: list[str]  # the blocking categories that reached their threshold (or explain "not_ok")
    flagged: bool  # the overall score lies in the policy's flag band: a human should look at this turn
    reason: str  # which rule decided, for the raw record
    readable: bool = True  # False: a score was missing or not a number (never an approval)
    allowed: list[str] = field(default_factory=list)  # allowed categories that explained a high "not_ok"


def decide(scores: Mapping[str, float], policy: PolicySpec) -> HeadDecision:
    """The policy's decision on the head's scores. Fail closed: a missing or non-finite score is unreadable."""
    rules = policy.head or DEFAULT_RULES
    bad = [k for k, v in scores.items() if not isinstance(v, (int, float)) or not math.isfinite(v)]
    if OVERALL not in scores or bad:
        why = f"scores not readable: {', '.join(bad) or OVERALL + ' missing'}"
        return HeadDecision(True, [], False, why, readable=False)
    not_ok = float(scores[OVERALL])
    cats = {k: float(v) for k, v in scores.items() if k != OVERALL}

    def reached(name: str) -> bool:
        return name in cats and cats[name] >= rules.categories[name].threshold

    blocking = sorted((c for c, rule in rules.categories.items() if rule.block and reached(c)), key=lambda c: -cats[c])
    allowed = [c for c, rule in rules.categories.items() if not rule.block and reached(c)]
    top = max(cats, key=cats.get) if cats else None
    flagged = rules.flag_band is not None and rules.flag_band[0] <= not_ok < rules.flag_band[1]
    if blocking:
        return HeadDecision(True, blocking[:MAX_CATEGORIES], flagged, "blocking category", allowed=allowed)
    if not_ok >= rules.not_ok_threshold:
        if top is not None and top in allowed:
            return HeadDecision(False, [], flagged, f"not_ok explained by allowed category {top}", allowed=allowed)
        named = sorted(
            (c for c in cats if c in policy.categories and cats[c] >= rules.not_ok_threshold), key=lambda c: -cats[c]
        )
        return HeadDecision(True, named[:MAX_CATEGORIES], flagged, "not_ok threshold", allowed=allowed)
    return HeadDecision(False, [], flagged, "below every threshold", allowed=allowed)


@dataclass
class HeadJudge:
    """A loaded head, its prompt, and the embedded model's hidden states (built on first use)."""

    head: ReviewerHead
    prompt: AnyHeadPrompt
    extractor: Callable[[], Extractor]
    path: str = ""
    # The client whose context the assistant writes in (in-context heads on the embedded model): a verdict is
    # read there when it holds the draft (a chunk verdict: between two tokens of the draft being written, by the
    # writing thread), else in the extractor's own context.
    context: Any = None
    _extractor: Extractor | None = None
    # Where the last verdict's prompt was read and what it cost (the verdict's raw record keeps it).
    last_read: dict[str, Any] = field(default_factory=dict)

    async def scores(
        self, request: str, draft: str, *, reuse: bool = False, while_writing: bool = True
    ) -> tuple[dict[str, float], int]:
        """{output: probability} for this draft, and the prompt tokens read.

        `reuse` (chunk verdicts): the extractor keeps the prefix its context holds from the previous prompt, so
        a growing draft costs only its new tokens. The vectors then differ from a fresh pass by float rounding
        alone (~1.7% relative, as much as a fresh pass in smaller batches does; tests/models). The whole-draft
        verdict reads from a fresh cache, in the layout the head was trained on. The in-context layout was trained
        with the assistant's system prompt kept from row to row, and is always read so.

        `while_writing` False: a chunk verdict is not read in the assistant's context while it writes (a read there
        pauses the draft), but in the reviewer's own, which runs alongside the writing."""
        if self._extractor is None:
            self._extractor = self.extractor()
        prompt = self.prompt
        reuse = reuse or isinstance(prompt, InContextPrompt)
        for _ in range(MAX_CLIPS):
            try:
                states = await self._read(prompt.messages(request, draft), reuse, while_writing)
                break
            except PromptTooLong as exc:
                # Characters do not bound tokens (digits, symbols, CJK): clip request and draft further, in
                # proportion, keeping the prompt the head was trained on, until the prompt fits the context.
                share = max(exc.n_ctx / exc.n_tokens * 0.9, 0.1)
                prompt = prompt.model_copy(
                    update={
                        "max_draft_chars": max(int(prompt.max_draft_chars * share), 1),
                        "max_request_chars": max(int(prompt.max_request_chars * share), 1),
                    }
                )
        else:
            raise HiddenStateError(f"the head's prompt does not fit the context after {MAX_CLIPS} cuts")
        return self.head.score(states.states, layers=list(states.layers)), int(getattr(states, "n_tokens", 0))

    async def _read(self, messages: list[dict[str, str]], reuse: bool, while_writing: bool = True) -> Any:
        assert self._extractor is not None
        if self.context is not None:
            try:
                held = await self.context.read_in_context(
                    messages, self.head.layers, max_new=IN_CONTEXT_MAX_NEW, while_writing=while_writing
                )
            except PromptTooLong:
                held = None
            if held is not None:
                stats = getattr(self._extractor, "stats", None)
                if stats is not None:  # the reviewer's reading, wherever it happened (the benchmarks count it)
                    stats.count(held)
                    stats.in_context += 1
                self.last_read = _read_record("assistant_context", held)
                return held
        states = await self._extractor.aextract(messages, self.head.layers, reuse=reuse)
        self.last_read = _read_record("own_context", states)
        return states


def _read_record(where: str, states: Any) -> dict[str, Any]:
    n = int(getattr(states, "n_tokens", 0))
    evaluated = int(getattr(states, "evaluated", -1))
    restored = getattr(states, "restored", 0)  # a chunk read between two tokens: draft tokens evaluated again
    return {
        "in": where,
        "tokens": n,
        **({"evaluated": evaluated} if evaluated >= 0 else {}),
        **({"restored": int(restored)} if isinstance(restored, int) and restored > 0 else {}),
    }


_warned: set[str] = set()


def warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        logger.warning(message)


def load_for(spec: AgentSpec, handle: ModelHandle, root: Path, *, request: bool = False) -> HeadJudge | None:
    """The head this reviewer decides with, or None (the prompted decision). None without a warning when no
    head is named or the reviewer is not on the embedded model; with one warning when a named head cannot be
    used (missing, unreadable, or for another model or prompt).

    `request`: the agent's `request_head` instead, read through config/request_head.yaml: P(request harmful),
    which decides drafts that only decline (else the prompted refusal check does)."""
    named = spec.request_head if request else spec.head
    if named is None or not isinstance(handle.spec, EmbeddedModelSpec):
        return None
    what, fallback = ("request head", "the prompted refusal check") if request else ("head", "prompted decision")
    path = root / named
    make = getattr(handle.client, "hidden_state_extractor", None)
    if make is None:
        warn_once(f"reviewer {spec.name}: model {handle.name} gives no hidden states; {fallback}")
        return None
    own = root / "config" / (REQUEST_PROMPT if request else _card_prompt_file(path))
    try:
        prompt, head = _loaded(own if own.is_file() else None, path, request)
    except HeadError as exc:
        warn_once(f"reviewer {spec.name}: {what} not used ({exc}); {fallback} decides")
        return None
    context = None
    owner = getattr(handle.client, "weights_owner", None)
    if isinstance(prompt, InContextPrompt) and owner is not None and hasattr(owner, "read_in_context"):
        owner.enable_capture()
        context = owner
    return HeadJudge(head=head, prompt=prompt, extractor=make, path=named, context=context)


def _card_prompt_file(head_path: Path) -> str:
    """The head prompt a head was trained on, as its card names it (config/…, inside the project); the fenced
    config/reviewer_head.yaml for a card that names none or names a file elsewhere. An unreadable card is left
    to load_head, which says what is wrong with it. Read once per version of the card, like the head itself."""
    card = head_path.with_suffix(".json")
    return _prompt_file_named(str(card), mtime_ns(card))


@functools.lru_cache(maxsize=64)
def _prompt_file_named(card: str, _mtime_ns: int) -> str:
    try:
        named = str(json.loads(Path(card).read_text(encoding="utf-8"))["prompt"]["file"])
    except (OSError, ValueError, KeyError, TypeError):
        return "reviewer_head.yaml"
    parts = Path(named).parts
    if len(parts) == 2 and parts[0] == "config" and parts[1].endswith(".yaml"):
        return parts[1]
    return "reviewer_head.yaml"


# Every conversation builds its reviewer (a server: every request), and the files seldom change: the prompt
# and the head are read once per version of the files (path and modification time), not once per request.
_LOADED: dict[tuple, tuple[AnyHeadPrompt, ReviewerHead]] = {}


def mtime_ns(path: Path | None) -> int:
    try:
        return path.stat().st_mtime_ns if path is not None else 0
    except OSError:
        return 0


def _loaded(prompt_path: Path | None, head_path: Path, request: bool = False) -> tuple[AnyHeadPrompt, ReviewerHead]:
    card = head_path.with_suffix(".json")
    key = (str(prompt_path), mtime_ns(prompt_path), str(head_path), mtime_ns(head_path), mtime_ns(card), request)
    if key not in _LOADED:
        prompt = load_request_prompt(prompt_path) if request else load_prompt(prompt_path)
        _LOADED[key] = (prompt, load_head(head_path, model_sha256=gguf.GGUF_SHA256, prompt_sha256=prompt.sha256))
    return _LOADED[key]


def critique_note(categories: Sequence[str], policy: PolicySpec) -> str:
    """What the critique is told after the head sent a draft back: the categories it flagged, described."""
    if not categories:
        return (
            "\n\nThe reviewer's judgement head found this draft not OK overall without naming a category of this "
            "policy. Say what must change."
        )
    lines = "\n".join(f"- {c}: {policy.categories.get(c, c)}" for c in categories)
    return (
        f"\n\nThe reviewer's judgement head flagged these categories:\n{lines}\n"
        "Write the critique about exactly these problems."
    )
