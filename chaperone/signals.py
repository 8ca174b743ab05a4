"""Run the CLI's async work so that SIGTERM and SIGHUP stop it the way Ctrl-C does: the running turns are
cancelled, their transcripts closed with an interrupted record, finished work kept."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Coroutine
from typing import Any


class Terminated(Exception):
    """The work was stopped by a signal; `code` is the conventional exit status (128 + signal)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.code = 128 + signum


def run(work: Coroutine[Any, Any, Any]) -> Any:
    """asyncio.run(work); Ctrl-C raises KeyboardInterrupt as usual, SIGTERM/SIGHUP raise Terminated —
    in each case after the cancelled work has cleaned up."""

    async def main() -> Any:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        received: list[int] = []

        def stop(signum: int) -> None:
            received.append(signum)
            if task is not None:
                task.cancel()

        for signum in (signal.SIGTERM, signal.SIGHUP):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, stop, signum)
        try:
            return await work
        except asyncio.CancelledError:
            if received:
                raise Terminated(received[0]) from None
            raise

    return asyncio.run(main())
