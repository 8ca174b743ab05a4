"""Keep secrets out of transcripts, logs and error messages.

Every API key the process reads is registered here; anything written for a human
or an auditor passes through `scrub` first.
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "[REDACTED]"
# Shapes of common keys, caught even when they were never registered (e.g. pasted into a prompt file).
_KEY_SHAPES = re.compile(r"\b(sk-[A-Za-z0-9_\-]{16,}|Bearer\s+[A-Za-z0-9_\-\.]{16,})")


class Redactor:
    def __init__(self, secrets: set[str] | None = None):
        self._secrets: set[str] = set()
        for s in secrets or ():
            self.add(s)

    def add(self, secret: str | None) -> None:
        if secret and len(secret) >= 4:
            self._secrets.add(secret)

    def text(self, value: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret in value:
                value = value.replace(secret, REDACTED)
        return _KEY_SHAPES.sub(REDACTED, value)

    def scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.scrub(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.scrub(v) for v in value]
        return value


# One process-wide registry: keys are registered when clients are built, and the log sink uses it.
GLOBAL = Redactor()
