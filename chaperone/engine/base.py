"""The contract both chats implement: the guarded chat and the bare baseline of an evaluation.

A driver (scenario runner, terminal chat, eval, server) holds a `Chat` through a `Conversation` and only
calls `send()`; what the turn produced comes back as a `TurnResult` and, event by event, to the sinks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from autogen_core import CancellationToken

from chaperone.engine.events import Sink, TurnResult
from chaperone.engine.memory import ConversationMemory

if TYPE_CHECKING:
    from chaperone.engine.assistant import DraftingAgent
    from chaperone.engine.reviewer import ReviewingAgent


class Chat(Protocol):
    assistant: DraftingAgent
    reviewer: ReviewingAgent | None  # None: the bare baseline, nothing is reviewed
    memory: ConversationMemory
    fallback: str  # what the user gets when an answer is withheld
    sinks: list[Sink]
    turns: int  # user turns so far

    async def send(self, text: str, cancellation_token: CancellationToken | None = None) -> TurnResult:
        """Run one user turn; raises CancelledError when cancelled (the events are on the record first)."""
        ...
