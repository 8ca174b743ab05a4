"""Errors a user can act on. The CLI prints them as one line and exits 2, never a traceback."""

from __future__ import annotations

EXIT_OK = 0
EXIT_EXPECTATION_FAILED = 1
EXIT_BAD_INPUT = 2


class ChaperoneError(Exception):
    """Base of every error that is shown to the user as a plain message."""


class ConfigError(ChaperoneError):
    """A user-facing file is wrong: names the file, where in it, and what is expected."""

    def __init__(self, path: object, message: str, *, where: str | None = None, line: int | None = None):
        self.path = str(path)
        self.where = where
        self.line = line
        message = " ".join(message.split())  # one line, whatever a parser or a quoted value put in it
        self.message = message
        location = self.path
        if line is not None:
            location += f":{line}"
        if where:
            location += f": {where}"
        super().__init__(f"{location}: {message}")
