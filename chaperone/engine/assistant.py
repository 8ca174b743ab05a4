"""The two speaking agents of the guarded chat, as AutoGen chat agents.

The drafting agent answers the user and redrafts on critique; the reviewing agent
returns a structured verdict on the latest draft. Both keep what they know of
earlier turns in a shared `ConversationMemory` that holds only what the user
actually received, so rejected drafts never leak into later context.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from autogen_agentchat.agents import BaseChatAgent
from autogen_agentchat.base import Response
from autogen_agentchat.messages import BaseChatMessage, TextMessage
from autogen_core import CancellationToken
from autogen_core.models import AssistantMessage, LLMMessage, SystemMessage, UserMessage

from chaperone.config.schema import AgentSpec
from chaperone.engine import reviewer_prompt
from chaperone.engine.events import ActivityHook
from chaperone.engine.memory import ConversationMemory
from chaperone.engine.verdict import VerdictMessage
from chaperone.models.pool import ModelHandle, call_model, text_of

if TYPE_CHECKING:
    from chaperone.engine.chunked_review import ChunkedReview


class DraftingAgent(BaseChatAgent):
    """The unaligned assistant: answers the user's turn, and redrafts when the reviewer sends it back."""

    def __init__(
        self,
        spec: AgentSpec,
        model: ModelHandle,
        memory: ConversationMemory,
        *,
        user_name: str,
        reviewer_name: str,
        memory_turns: int = 8,
    ):
        super().__init__(spec.name, spec.description or "drafts answers to the user")
        self.spec, self.model, self.memory = spec, model, memory
        self._user_name, self._reviewer_name = user_name, reviewer_name
        self._memory_turns = memory_turns
        self.turn_token: CancellationToken | None = None  # set by the guarded chat: cancels this turn's calls
        self.on_activity: ActivityHook | None = None  # set by the guarded chat when a live view watches
        self.chunks: ChunkedReview | None = None  # set by the guarded chat: write under chunked review
        self._reset_turn()

    def _reset_turn(self) -> None:
        self._request: str | None = None
        self._last_draft: str | None = None
        self._critique: str | None = None
        self._round = 0

    @property
    def produced_message_types(self) -> Sequence[type[BaseChatMessage]]:
        return (TextMessage,)

    def _absorb(self, messages: Sequence[BaseChatMessage]) -> None:
        for msg in messages:
            if msg.source == self._user_name and isinstance(msg, TextMessage):
                self._reset_turn()
                self._request = msg.content
            elif msg.source == self._reviewer_name and isinstance(msg, VerdictMessage):
                self._critique = msg.content.critique

    def prompt(self) -> list[LLMMessage]:
        msgs: list[LLMMessage] = [SystemMessage(content=self.spec.system_prompt)]
        for user, answer in self.memory.exchanges[-self._memory_turns :] if self._memory_turns else []:
            msgs.append(UserMessage(content=user, source="user"))
            msgs.append(AssistantMessage(content=answer, source=self.name))
        msgs.append(UserMessage(content=self._request or "", source="user"))
        if self._last_draft is not None and self._critique is not None:
            msgs.append(AssistantMessage(content=self._last_draft, source=self.name))
            msgs.append(UserMessage(content=reviewer_prompt.revision_request(self._critique), source="reviewer"))
        return msgs

    async def on_messages(self, messages: Sequence[BaseChatMessage], cancellation_token: CancellationToken) -> Response:
        self._absorb(messages)
        if self._request is None:
            raise RuntimeError(f"{self.name} was asked to draft before any user turn")
        started = time.perf_counter()
        on_piece = None
        if self.on_activity is not None:
            hook, drafting, pieces = self.on_activity, self._round + 1, [0]
            hook("drafting", drafting, 0, "")

            def on_piece(piece: str) -> None:
                pieces[0] += 1
                hook("drafting", drafting, pieces[0], piece)

        args = self.model.generation_args(self.spec.generation)
        tokens = [cancellation_token, self.turn_token]
        chunked: dict[str, str] = {}
        if self.chunks is None:
            result = await call_model(self.model, self.prompt(), args, tokens, on_piece)
        else:
            written = await self.chunks.write(
                self.model,
                self.prompt(),
                args,
                tokens,
                request=self._request,
                round_=self._round + 1,
                on_piece=on_piece,
            )
            result = written.result
            # What the chunked review did, for the guarded chat's records (metadata values are strings).
            chunked["released_chars"] = str(written.released)
            if written.stopped_at_chunk is not None:
                chunked["stopped_at_chunk"] = str(written.stopped_at_chunk)
                chunked["tokens_saved"] = str(written.tokens_saved if written.tokens_saved is not None else "")
        text = text_of(result.content).strip()
        self._round += 1
        self._last_draft = text
        self._critique = None
        return Response(
            chat_message=TextMessage(
                content=text,
                source=self.name,
                models_usage=result.usage,
                metadata={
                    "round": str(self._round),
                    "latency_s": f"{time.perf_counter() - started:.3f}",
                    "model": self.model.label,
                    # "length": the draft stopped at the agent's max_tokens, mid-answer (AutoGen's finish_reason)
                    "finish_reason": str(result.finish_reason),
                    **chunked,
                },
            )
        )

    async def on_reset(self, cancellation_token: CancellationToken) -> None:
        self._reset_turn()
