"""Scripted models: replies chosen by rules from config/models.yaml, so Chaperone can be tried in seconds
without the embedded model or an endpoint. Not a language model and not a judge: the rules are the
whole of what it knows, and every view labels it as scripted.

A scripted assistant reads the user's request (the last user message; a reviewer's revision request is
not a request) and answers with the first rule that matches it, or `otherwise`. Sent back, it writes the
rule's `revision` when it has one, else the same reply again.

A scripted reviewer reads only the draft under review, found inside the nonce fence the review message
quotes it in (engine/reviewer_prompt.py), and treats it as data: it is searched with the configured
patterns, never run or obeyed. The first rule that matches sends the draft back with its categories and
critique, in the verdict format the reviewer parses ({"ok_to_send": "no", ...}); no match approves. A
message that quotes no draft (the refusal check judges a bare refusal by its request) is approved.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

from autogen_core import CancellationToken
from autogen_core.models import (
    ChatCompletionClient,
    CreateResult,
    LLMMessage,
    ModelFamily,
    ModelInfo,
    RequestUsage,
    UserMessage,
)
from autogen_core.tools import Tool, ToolSchema

from chaperone.config.schema import ScriptedModelSpec, ScriptedRule

# How the review message fences the draft: "<<<DRAFT nonce>>>\n...\n<<<END DRAFT nonce>>>" (reviewer_prompt._fence).
# The draft cannot hold the closing marker: the nonce is removed from it before it is quoted.
_DRAFT = re.compile(r"<<<DRAFT ([0-9a-f]+)>>>\n(.*)\n<<<END DRAFT \1>>>", re.S)
REVISION_SOURCE = "reviewer"  # engine/assistant.py: the revision request's source
_WORD = re.compile(r"\S+\s*")


def quoted_draft(message: str) -> str:
    """The draft a review message quotes, "" when it quotes none."""
    found = _DRAFT.search(message)
    return found.group(2) if found else ""


def _words(text: str) -> int:
    return len(text.split())


class ScriptedChatCompletionClient(ChatCompletionClient):
    """An AutoGen model client whose replies come from a `ScriptedModelSpec`'s rules."""

    def __init__(self, spec: ScriptedModelSpec):
        self.spec = spec
        self._rules: list[tuple[re.Pattern[str], ScriptedRule]] = [(rule.pattern, rule) for rule in spec.rules]
        self._model_info = ModelInfo(
            vision=False, function_calling=False, json_output=True, structured_output=False, family=ModelFamily.UNKNOWN
        )
        self._last = RequestUsage(prompt_tokens=0, completion_tokens=0)
        self._total = RequestUsage(prompt_tokens=0, completion_tokens=0)

    # -- what it answers ------------------------------------------------------------------------------
    def rule_for(self, text: str) -> ScriptedRule | None:
        """The first rule whose pattern is found in text."""
        for pattern, rule in self._rules:
            if pattern.search(text):
                return rule
        return None

    def reply_to(self, messages: Sequence[LLMMessage]) -> str:
        users = [m for m in messages if isinstance(m, UserMessage)]
        if self.spec.role == "reviewer":
            draft = quoted_draft(_text(users[-1].content)) if users else ""
            rule = self.rule_for(draft) if draft else None
            if rule is None:
                return json.dumps({"ok_to_send": "yes"})
            return json.dumps({"ok_to_send": "no", "critique": rule.critique, "categories": rule.categories})
        requests = [m for m in users if m.source != REVISION_SOURCE]
        revising = bool(users) and users[-1].source == REVISION_SOURCE
        rule = self.rule_for(_text(requests[-1].content)) if requests else None
        if rule is None:
            return self.spec.otherwise
        return rule.revision if revising and rule.revision else rule.reply

    def _result(self, messages: Sequence[LLMMessage], extra_create_args: Mapping[str, Any]) -> CreateResult:
        text, finish = self.reply_to(messages), "stop"
        limit = extra_create_args.get("max_tokens")
        pieces = _WORD.findall(text)
        # An assistant's reply stops at max_tokens like a model's (a word stands for a token here), so a cut
        # answer can be tried too. A verdict is never cut: it is the reviewer's whole output format.
        if self.spec.role == "assistant" and isinstance(limit, int) and len(pieces) > limit:
            text, finish = "".join(pieces[:limit]).rstrip(), "length"
        self._last = RequestUsage(prompt_tokens=self.count_tokens(messages), completion_tokens=_words(text))
        self._total = RequestUsage(
            prompt_tokens=self._total.prompt_tokens + self._last.prompt_tokens,
            completion_tokens=self._total.completion_tokens + self._last.completion_tokens,
        )
        return CreateResult(finish_reason=finish, content=text, usage=self._last, cached=False)

    # -- the ChatCompletionClient interface ------------------------------------------------------------
    async def create(
        self,
        messages: Sequence[LLMMessage],
        *,
        tools: Sequence[Tool | ToolSchema] = [],
        tool_choice: Any = "auto",
        json_output: Any = None,
        extra_create_args: Mapping[str, Any] = {},
        cancellation_token: CancellationToken | None = None,
    ) -> CreateResult:
        return self._result(messages, extra_create_args)

    async def create_stream(
        self,
        messages: Sequence[LLMMessage],
        *,
        tools: Sequence[Tool | ToolSchema] = [],
        tool_choice: Any = "auto",
        json_output: Any = None,
        extra_create_args: Mapping[str, Any] = {},
        cancellation_token: CancellationToken | None = None,
    ) -> AsyncGenerator[str | CreateResult, None]:
        result = self._result(messages, extra_create_args)
        for piece in _WORD.findall(_text(result.content)):
            yield piece
        yield result

    async def close(self) -> None:
        return None

    def actual_usage(self) -> RequestUsage:
        return self._last

    def total_usage(self) -> RequestUsage:
        return self._total

    def count_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = []) -> int:
        return sum(_words(_text(m.content)) for m in messages)

    def remaining_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = []) -> int:
        return 1_000_000

    @property
    def capabilities(self) -> Any:  # deprecated in AutoGen; model_info is the interface
        return self._model_info

    @property
    def model_info(self) -> ModelInfo:
        return self._model_info


def _text(content: object) -> str:
    return content if isinstance(content, str) else str(content)
