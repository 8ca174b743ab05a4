"""The app's log: loguru to stderr and to a file, with AutoGen's standard logging routed into it.

Every line passes through the redactor, so a key never reaches a log.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from loguru import logger

from chaperone.private_files import private_dir, private_opener

from chaperone.redaction import GLOBAL as GLOBAL_REDACTOR


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


def _redact(record: dict) -> bool:
    record["message"] = GLOBAL_REDACTOR.text(record["message"])
    return True


def _terminal_filter(verbose: bool):
    def keep(record: dict) -> bool:
        # Libraries' own error reports (AutoGen's runtime logs every failed agent call with its traceback)
        # belong in the log file; the person at the terminal gets Chaperone's one-line account.
        if record["extra"].get("stdlib") and not verbose:
            return False
        if not verbose:
            record["exception"] = None
        return _redact(record)

    return keep


def configure(log_file: Path | None, verbose: bool = False) -> None:
    logger.remove()
    # diagnose=False everywhere: loguru's variable dumps could print request headers, i.e. keys.
    logger.add(sys.stderr, level="DEBUG" if verbose else "WARNING", filter=_terminal_filter(verbose),
               format="<dim>{time:HH:mm:ss}</dim> <level>{level: <7}</level> {message}",
               backtrace=False, diagnose=False)
    if log_file is not None:
        private_dir(log_file.parent)
        logger.add(log_file, level="DEBUG", filter=_redact, rotation="10 MB", retention=5, enqueue=False,
                   opener=private_opener,
                   format="{time:YYYY-MM-DD HH:mm:ss.SSS} {level: <7} {name}:{line} {message}",
                   backtrace=False, diagnose=False)
    logging.basicConfig(handlers=[_InterceptHandler()], level=logging.INFO, force=True)
    # AutoGen's runtime logs every message it routes, whole prompts included: only with --verbose.
    for name in ("autogen_core", "autogen_core.events", "autogen_agentchat", "autogen_agentchat.events"):
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)
    for noisy in ("httpx", "httpcore", "openai"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
