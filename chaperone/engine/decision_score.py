"""The reviewer's decision as a probability, and the threshold that turns it into approve/revise.

A yes/no verdict read as text hides how sure the model was. Reading the probability of the decision
token instead gives a score per draft, and the policy's `decision_threshold` says where "send it back"
starts, so a deployer trades missed harm against needless send-backs without touching a prompt, and an
evaluation shows the whole precision/recall curve from one run.

The score is P(not OK) = P("no") / (P("yes") + P("no")) at the place where the verdict's value starts,
`{"ok_to_send": "` — renormalised over the two answers the schema allows. Two sources:
- the embedded model: the logits of the next token after that prefix (`llama_client.option_logprobs`),
  no token generated;
- an OpenAI-compatible endpoint: the `top_logprobs` it returns for the generated verdict, when it
  returns any; without them the reviewer falls back to the model's written yes/no.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

DECISION_PREFIX = '{"ok_to_send": "'
OPTIONS = ("yes", "no")  # OK to send / not OK
TOP_LOGPROBS = 5  # alternatives asked of an OpenAI-compatible endpoint per token

_BEFORE_VALUE = re.compile(r'"ok_to_send"\s*:\s*"?\s*$')


def p_not_ok(logprobs: Mapping[str, float]) -> float | None:
    """P("no") renormalised over yes/no; None when neither answer was seen. A missing one counts as impossible."""
    yes, no = logprobs.get("yes", -math.inf), logprobs.get("no", -math.inf)
    if yes == -math.inf and no == -math.inf:
        return None
    top = max(yes, no)
    e_yes, e_no = math.exp(yes - top), math.exp(no - top)
    return e_no / (e_yes + e_no)


def revise(score: float, threshold: float) -> bool:
    """Send back when the probability that the draft is not OK reaches the threshold."""
    return score >= threshold


def _option(text: str) -> str | None:
    word = text.strip().strip('"').strip()  # exact: the schema allows "yes" and "no", not "Yes"
    return word if word in OPTIONS else None


def _logsumexp(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    top = max(a, b)
    return top + math.log(math.exp(a - top) + math.exp(b - top))


def _text(tok: Any) -> str | None:
    """A token's text: `token` when given, else its `bytes` (AutoGen keeps only bytes for alternatives)."""
    text = _get(tok, "token")
    if isinstance(text, str):
        return text
    raw = _get(tok, "bytes")
    return bytes(raw).decode("utf-8", errors="ignore") if raw else None


def from_token_logprobs(tokens: Iterable[Any]) -> float | None:
    """P(not OK) from an OpenAI-style list of generated tokens, each with `token`, `logprob`, `top_logprobs`.

    Accepts AutoGen's ChatCompletionTokenLogprob objects or plain dicts. The decision token is the first
    one after `"ok_to_send": "`; its alternatives spelled yes/no (quotes and spaces aside) are summed.
    When the alternatives carry no text, the chosen token alone is used: P(it) against the rest.
    None when the verdict's value is not found or names neither answer."""
    before = ""
    for tok in tokens:
        text = _text(tok) or ""
        if _BEFORE_VALUE.search(before) and text.strip(' "'):
            by_text: dict[str, float] = {}
            for alt in _get(tok, "top_logprobs") or []:
                alt_text, logprob = _text(alt), _get(alt, "logprob")
                if alt_text is not None and logprob is not None:
                    by_text.setdefault(alt_text, float(logprob))
            chosen, chosen_lp = _option(text), _get(tok, "logprob")
            if not by_text and chosen is not None and chosen_lp is not None:
                p = min(math.exp(float(chosen_lp)), 1.0)
                return p if chosen == "no" else 1.0 - p
            if chosen_lp is not None:
                by_text.setdefault(text, float(chosen_lp))
            seen: dict[str, float] = {}
            for alt_text, logprob in by_text.items():
                option = _option(alt_text)
                if option is not None:
                    seen[option] = _logsumexp(seen.get(option, -math.inf), logprob)
            return p_not_ok(seen)
        before += text
    return None


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)
