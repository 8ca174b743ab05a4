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
        self.where = where = " ".join(where.split()) or repr(where) if where else where  # a key may hold a newline
        self.line = line
        message = " ".join(message.split())  # one line, whatever a parser or a quoted value put in it
        self.message = message
        location = self.path
        if line is not None:
            location += f":{line}"
        if where:
            location += f": {where}"
        super().__init__(f"{location}: {message}")


class ModelCallError(ChaperoneError):
    """A model call failed for good (after the client's retries, where a retry makes sense)."""


def describe_error(exc: BaseException, limit: int = 300) -> str:
    """One line for people and transcripts. AutoGen re-raises an agent's failure as a RuntimeError
    whose text carries the whole remote traceback: keep its first line only."""
    text = str(exc).split("\nTraceback:", 1)[0].strip() or type(exc).__name__
    first = text.splitlines()[0] if text else ""
    if isinstance(exc, RuntimeError):
        first = first.removeprefix(f"{ModelCallError.__name__}: ")  # already says which model and what failed
    if not isinstance(exc, (RuntimeError, ModelCallError)) or ":" not in first:
        first = f"{type(exc).__name__}: {first}"
    return first if len(first) <= limit else first[: limit - 1] + "…"
