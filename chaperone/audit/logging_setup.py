"""The app's log: loguru to stderr and to a file, with AutoGen's standard logging routed into it.

Every line passes through the redactor, so a key never reaches a log.
"""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path

from loguru import logger

from chaperone.audit.private_files import private_dir, private_opener
from chaperone.audit.redaction import GLOBAL as GLOBAL_REDACTOR


class _InterceptHandler(logging.Handler):
    """Forward standard-library log records (AutoGen, openai, httpx) to loguru."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.bind(stdlib=True).opt(depth=6, exception=record.exc_info).log(
            level, "[{}] {}", record.name, record.getMessage()
        )


def _patch(record: dict) -> None:
    """Runs once per record, before any sink: the message and any traceback are redacted here, and the
    traceback travels as redacted text (an exception's own text may quote a key, e.g. an endpoint's
    "Incorrect API key provided: …"; loguru would print it as is)."""
    record["message"] = GLOBAL_REDACTOR.text(record["message"])
    exc = record["exception"]
    if exc is not None and exc.type is not None:
        text = "".join(traceback.format_exception(exc.type, exc.value, exc.traceback))
        record["extra"]["traceback"] = GLOBAL_REDACTOR.text(text).rstrip("\n")
    record["exception"] = None


def _with_traceback(head: str, show: bool = True):
    def fmt(record: dict) -> str:
        # The traceback is referenced as a field, never pasted into the format: its braces stay text.
        tail = "\n{extra[traceback]}" if show and "traceback" in record["extra"] else ""
        return head + tail + "\n"

    return fmt


def _terminal_filter(verbose: bool):
    def keep(record: dict) -> bool:
        # Libraries' own error reports (AutoGen's runtime logs every failed agent call with its traceback)
        # belong in the log file; the person at the terminal gets Chaperone's one-line account.
        return verbose or not record["extra"].get("stdlib")

    return keep


def configure(log_file: Path | None, verbose: bool = False, terminal_level: str = "WARNING") -> None:
    """terminal_level: what stderr shows without -v (the server shows one INFO line per request)."""
    logger.remove()
    logger.configure(patcher=_patch)
    # diagnose=False everywhere: loguru's variable dumps could print request headers, i.e. keys.
    logger.add(
        sys.stderr,
        level="DEBUG" if verbose else terminal_level,
        filter=_terminal_filter(verbose),
        format=_with_traceback("<dim>{time:HH:mm:ss}</dim> <level>{level: <7}</level> {message}", verbose),
        backtrace=False,
        diagnose=False,
    )
    if log_file is not None:
        private_dir(log_file.parent)
        logger.add(
            log_file,
            level="DEBUG",
            rotation="10 MB",
            retention=5,
            enqueue=False,
            opener=private_opener,
            format=_with_traceback("{time:YYYY-MM-DD HH:mm:ss.SSS} {level: <7} {name}:{line} {message}"),
            backtrace=False,
            diagnose=False,
        )
    logging.basicConfig(handlers=[_InterceptHandler()], level=logging.INFO, force=True)
    # AutoGen's runtime logs every message it routes, whole prompts included: only with --verbose.
    for name in ("autogen_core", "autogen_core.events", "autogen_agentchat", "autogen_agentchat.events"):
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)
    for noisy in ("httpx", "httpcore", "openai"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
