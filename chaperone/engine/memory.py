"""What the agents remember of earlier turns: only what the user actually received."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ConversationMemory:
    """Completed exchanges: (what the user said, what the user got)."""

    exchanges: list[tuple[str, str]] = field(default_factory=list)
    keep: int | None = None  # the most any agent reads back; older exchanges are dropped (long chats, serving)

    def add(self, user: str, delivered: str) -> None:
        self.exchanges.append((user, delivered))
        if self.keep is not None and len(self.exchanges) > self.keep:
            del self.exchanges[: len(self.exchanges) - self.keep]
