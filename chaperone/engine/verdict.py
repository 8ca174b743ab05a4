"""The moral reviewer's verdict: schema, JSON schema for constrained decoding, defensive parsing.

A verdict is read only from the reviewer's own output. Anything that cannot be
read as a verdict counts as "revise" (fail closed): an unreadable verdict is
never an approval.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Literal

from autogen_agentchat.messages import StructuredMessage
from pydantic import BaseModel, Field

Decision = Literal["approve", "revise"]

_APPROVE_WORDS = {"approve", "approved", "accept", "accepted", "pass", "ok", "allow", "allowed", "yes"}
_REVISE_WORDS = {"revise", "reject", "rejected", "deny", "denied", "block", "blocked", "fail", "no", "withhold"}


class Verdict(BaseModel):
    decision: Decision
    categories: list[str] = Field(default_factory=list)
    critique: str = ""
    readable: bool = True  # False when the reviewer's output could not be parsed
    # P(not OK to send) read from the decision token's probability, when the backend gives it
    # (chaperone.engine.decision_score); the decision then follows the policy's decision_threshold.
    score: float | None = None
    # Which decision prompt judged the draft: "answer", or "refusal" (agents/*.yaml refusal_check), whose
    # score is on its own scale with its own threshold.
    checked_as: str = "answer"
    # The judgement head's probabilities ("not_ok" and one per category) when a head decided
    # (chaperone.engine.head_decision); None when the prompted decision did.
    head_scores: dict[str, float] | None = None
    flagged: bool = False  # the head's overall score fell in the policy's flag band: for a human to look at

    @property
    def approved(self) -> bool:
        return self.decision == "approve" and self.readable


def decision_schema() -> dict[str, Any]:
    """Stage one: the decision alone, a handful of tokens."""
    return {
        "type": "object",
        "properties": {"ok_to_send": {"type": "string", "enum": ["yes", "no"]}},
        "required": ["ok_to_send"],
        "additionalProperties": False,
    }


def critique_schema(categories: list[str]) -> dict[str, Any]:
    """Stage two, only for a draft that is not OK: what to fix, then which categories.

    The critique comes first so the categories are chosen in the light of it; asked first,
    small models copy the head of the category list."""
    return {
        "type": "object",
        "properties": {
            "critique": {"type": "string", "maxLength": 400},
            "categories": {
                "type": "array",
                "items": {"type": "string", "enum": list(categories)},
                "minItems": 1,
                "maxItems": 2,
            },
        },
        "required": ["critique", "categories"],
        "additionalProperties": False,
    }


def parse_critique(raw: str, known_categories: list[str]) -> tuple[list[str], str]:
    """Read stage two defensively; it never changes the decision, only explains it."""
    for span in _objects_in(raw or ""):
        try:
            obj = json.loads(span)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            critique = obj.get("critique", "")
            return _categories(obj.get("categories"), known_categories), critique.strip() if isinstance(
                critique, str
            ) else ""
    return [], (raw or "").strip()[:400]


def _objects_in(text: str) -> list[str]:
    """Every balanced {...} span in text, outermost first (strings and escapes respected)."""
    spans, depth, start, in_str, esc = [], 0, -1, False, False
    for i, ch in enumerate(text):
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
            continue
        if ch == '"' and depth > 0:
            in_str = True
        elif ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                spans.append(text[start : i + 1])
    return spans


def _normalise_decision(value: Any) -> Decision | None:
    if isinstance(value, bool):
        return "approve" if value else "revise"
    if not isinstance(value, str):
        return None
    word = value.strip().lower()
    if word in _APPROVE_WORDS:
        return "approve"
    if word in _REVISE_WORDS:
        return "revise"
    return None


def _categories(value: Any, known_categories: list[str] | None) -> list[str]:
    """A model's category list, cleaned: ids outside the policy become "other", duplicates go."""
    items = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    cats = [str(c).strip() for c in items if isinstance(c, (str, int)) and str(c).strip()]
    if known_categories is not None:
        known = set(known_categories)
        cats = [c if c in known else "other" for c in cats]
    return list(dict.fromkeys(cats))


def _decision_field(obj: dict) -> Any:
    # Two spellings: {"ok_to_send": "yes"|"no"} (what the default reviewer writes) or {"decision": ...}.
    return obj["ok_to_send"] if "ok_to_send" in obj else obj.get("decision")


def unreadable(raw: str, reason: str) -> Verdict:
    return Verdict(
        decision="revise",
        categories=[],
        critique=f"The review could not be read ({reason}); the draft is not approved.",
        readable=False,
    )


def parse_verdict(raw: str, known_categories: list[str] | None = None) -> Verdict:
    """Read the reviewer's output defensively. Exactly one readable verdict object is required."""
    if not raw or not raw.strip():
        return unreadable(raw, "empty output")
    text = raw.strip()
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.S)
    if fenced:
        text = fenced.group(1)
    candidates: list[dict] = []
    for span in _objects_in(text):
        try:
            obj = json.loads(span)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and ("decision" in obj or "ok_to_send" in obj):
            candidates.append(obj)
    if not candidates:
        return unreadable(raw, "no JSON verdict found")
    if len(candidates) > 1:
        decisions = {_normalise_decision(_decision_field(c)) for c in candidates}
        if len(decisions) > 1:
            return unreadable(raw, "conflicting verdicts in one review")
    obj = candidates[0]
    decision = _normalise_decision(_decision_field(obj))
    if decision is None:
        return unreadable(raw, f"unknown decision {_decision_field(obj)!r}")
    critique = obj.get("critique", "")
    critique = critique if isinstance(critique, str) else json.dumps(critique)
    return Verdict(
        decision=decision, categories=_categories(obj.get("categories"), known_categories), critique=critique.strip()
    )


VerdictMessage = StructuredMessage[Verdict]


def text_sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
