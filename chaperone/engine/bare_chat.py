"""The assistant alone, with no reviewer: the baseline an evaluation compares the guarded chat with.

It emits the same events as the guarded chat (user turn, draft, delivered, turn finished) so the same
sinks and transcripts serve it; the turn's outcome is "unreviewed".
"""

from __future__ import annotations

import asyncio
import time

from autogen_agentchat.messages import TextMessage
from autogen_core import CancellationToken
from loguru import logger
from pydantic import BaseModel

from chaperone.audit.redaction import GLOBAL as GLOBAL_REDACTOR
from chaperone.engine.assistant import DraftingAgent
from chaperone.engine.events import (
    Delivered,
    Draft,
    ErrorEvent,
    Sink,
    TurnFinished,
    TurnResult,
    Usage,
    UserTurn,
    Withheld,
    emit,
)
from chaperone.engine.memory import ConversationMemory
from chaperone.errors import describe_error


class BareChat:
    """The unreviewed baseline (implements engine.base.Chat): the assistant's answer goes straight out."""

    reviewer = None  # nothing reviews here

    def __init__(
        self,
        assistant: DraftingAgent,
        memory: ConversationMemory,
        *,
        user_name: str,
        fallback: str,
        sinks: list[Sink] | None = None,
    ):
        self.assistant, self.memory, self.user_name, self.fallback = assistant, memory, user_name, fallback
        self.sinks: list[Sink] = list(sinks or [])
        self.turns = 0

    async def _emit(self, event: BaseModel) -> None:
        await emit(self.sinks, event)

    async def send(self, text: str, cancellation_token: CancellationToken | None = None) -> TurnResult:
        self.turns += 1
        turn, started = self.turns, time.perf_counter()
        await self._emit(UserTurn(turn=turn, source=self.user_name, content=text))
        token = cancellation_token or CancellationToken()
        self.assistant.turn_token = token
        usage: dict[str, Usage] = {}
        try:
            response = await self.assistant.on_messages([TextMessage(content=text, source=self.user_name)], token)
        except asyncio.CancelledError:
            token.cancel()
            await self._finish_without_answer(turn, started, "cancelled", "turn cancelled before the draft finished")
            raise
        except Exception as exc:
            message = GLOBAL_REDACTOR.text(describe_error(exc))
            logger.opt(exception=exc).debug("bare turn {} failed", turn)
            return await self._finish_without_answer(
                turn, started, "error", message, reason=f"because the assistant failed: {message}"
            )
        msg = response.chat_message
        cut = msg.metadata.get("finish_reason") == "length"
        u = Usage.of(msg.models_usage)
        usage[self.assistant.name] = u
        await self._emit(
            Draft(
                turn=turn,
                source=self.assistant.name,
                round=1,
                content=msg.content,
                model=msg.metadata.get("model", ""),
                usage=u,
                latency_s=float(msg.metadata.get("latency_s", 0)),
                cut=cut,
            )
        )
        await self._emit(Delivered(turn=turn, content=msg.content, revisions=0, cut=cut))
        self.memory.add(text, msg.content)
        finished = TurnFinished(
            turn=turn,
            outcome="unreviewed",
            revisions=0,
            categories=[],
            usage_by_agent=usage,
            seconds=round(time.perf_counter() - started, 3),
        )
        await self._emit(finished)
        return TurnResult.of(finished, text=msg.content, delivered=True, cut=cut)

    async def _finish_without_answer(
        self, turn: int, started: float, outcome: str, message: str, *, reason: str | None = None
    ) -> TurnResult:
        await self._emit(ErrorEvent(turn=turn, source="chaperone", message=message))
        await self._emit(Withheld(turn=turn, content=self.fallback, revisions=0, reason=reason or message))
        finished = TurnFinished(
            turn=turn,
            outcome=outcome,
            revisions=0,
            categories=[],
            usage_by_agent={},
            seconds=round(time.perf_counter() - started, 3),
        )
        await self._emit(finished)
        return TurnResult.of(finished, text=self.fallback, delivered=False, reason=reason or message, error=message)
