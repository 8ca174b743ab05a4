"""The head's fixed prompt: config/reviewer_head.yaml rendered for one request and draft.

The text is data (YAML), the code only fills it. Its sha256 (over the canonical JSON of every field)
names the prompt in the feature cache and in a head's card, so a head is never used with another prompt.
Request and draft are untrusted: chat-control tokens are broken apart, invisible characters dropped and
the fence markers neutralised, so neither can end its fence or open a chat turn.

Two layouts. `fenced` (HeadPrompt, config/reviewer_head.yaml): a judge's own prompt, request and draft fenced
as data in one user turn. `in_context` (InContextPrompt, config/reviewer_head_in_context.yaml): the assistant's
conversation as it stands after its draft (its system prompt, the request as the user's turn, the draft as its
own turn) and one question after it, so the hidden state is read where the assistant's own context ends
(issue 15: a verdict then needs no prompted pass, and the draft's tokens are a prefix a context can keep).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from chaperone.config import yaml_files

_CHECKOUT = Path(__file__).resolve().parents[2] / "config" / "reviewer_head.yaml"
_INSTALLED = Path(__file__).resolve().parents[1] / "defaults" / "config" / "reviewer_head.yaml"

_CONTROL = re.compile(r"<\|[^|<>\s]{1,40}\|>|</?tool_call>|<(?:start|end)_of_turn>")
_INVISIBLE = re.compile("[\u00ad\u180e\u200b-\u200d\u2060-\u2064\ufeff\U000e0000-\U000e007f\U000e0100-\U000e01ef]")
_FENCES = re.compile(r"<<<|>>>")
REQUEST_PROMPT = "request_head.yaml"  # the request head's prompt: the request alone (config/request_head.yaml)


class HeadPrompt(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    system: str
    user: str = Field(description="the user turn; {request} and {draft} are filled in")
    no_request: str = "(none)"
    max_request_chars: int = Field(1200, gt=0)
    max_draft_chars: int = Field(2000, gt=0)
    cut_mark: str = " [...]"

    @property
    def sha256(self) -> str:
        canonical = json.dumps(self.model_dump(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def messages(self, request: str, draft: str = "") -> list[dict[str, str]]:
        """The chat turns for one request and draft (a request head's prompt has no {draft}: leave it out)."""
        req = _clip(inert(request), self.max_request_chars, self.cut_mark) if request.strip() else self.no_request
        body = _clip(inert(draft), self.max_draft_chars, self.cut_mark)
        user = self.user.replace("{request}", req).replace("{draft}", body)
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]


class InContextPrompt(BaseModel):
    """The assistant's own conversation after its draft, then one question (the `in_context` layout)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    layout: Literal["in_context"]
    system: str = Field(description="the assistant's system prompt the head was trained under")
    question: str = Field(description="the user turn after the draft")
    no_request: str = "(none)"
    max_draft_chars: int = Field(2000, gt=0)
    # Not part of the trained rendering (requests were never clipped): only the scorer's fallback when a prompt
    # would not fit the extractor's context.
    max_request_chars: int = Field(100_000, gt=0)

    @property
    def sha256(self) -> str:
        # "in-context-v1" names this rendering: control tokens broken apart, invisible characters dropped, no
        # fences (the turns are the chat template's own), the draft cut at max_draft_chars.
        canonical = json.dumps(
            {"layout": "in-context-v1", "system": self.system, "question": self.question, "max": self.max_draft_chars},
            sort_keys=True,
        )
        return hashlib.sha256(canonical.encode()).hexdigest()

    def messages(self, request: str, draft: str = "") -> list[dict[str, str]]:
        req = _clip(_untokened(request), self.max_request_chars, "") if request.strip() else self.no_request
        return [
            {"role": "system", "content": self.system},
            {"role": "user", "content": req},
            {"role": "assistant", "content": _untokened(draft)[: self.max_draft_chars]},
            {"role": "user", "content": self.question},
        ]


AnyHeadPrompt = HeadPrompt | InContextPrompt


def _untokened(text: str) -> str:
    """Untrusted text that cannot open or close a chat turn (no fences to protect in the in-context layout)."""
    text = _INVISIBLE.sub("", text)
    return _CONTROL.sub(lambda m: f"{m.group()[0]} {m.group()[1:-1]} {m.group()[-1]}", text)


def inert(text: str) -> str:
    text = _INVISIBLE.sub("", text)
    text = _CONTROL.sub(lambda m: f"{m.group()[0]} {m.group()[1:-1]} {m.group()[-1]}", text)
    return _FENCES.sub(lambda m: " ".join(m.group()), text)


def _clip(text: str, limit: int, mark: str) -> str:
    return text if len(text) <= limit else text[:limit] + mark


def default_path(name: str = "reviewer_head.yaml") -> Path:
    """The checkout's config/<name> (reviewer_head.yaml, or request_head.yaml for the request head), or the copy
    an installed wheel carries."""
    checkout, installed = _CHECKOUT.with_name(name), _INSTALLED.with_name(name)
    return checkout if checkout.is_file() else installed


def load_prompt(path: Path | None = None) -> AnyHeadPrompt:
    """A head prompt file: `layout: in_context` is an InContextPrompt, anything else the fenced HeadPrompt."""
    path = path or default_path()
    data, lines = yaml_files.read_yaml(path)
    model = InContextPrompt if isinstance(data, dict) and data.get("layout") == "in_context" else HeadPrompt
    return yaml_files.validate(model, data, path, lines)


def load_request_prompt(path: Path | None = None) -> HeadPrompt:
    """config/request_head.yaml: the request head's prompt (its user turn has {request} only)."""
    return yaml_files.load(HeadPrompt, path or default_path(REQUEST_PROMPT))
