"""Work handed to the thread that generates in a llama.cpp context, run there between two tokens (issue 15).

A llama.cpp context serves one computation at a time, and while the assistant writes, its worker thread owns
it. A chunk verdict of the in-context head wants to read a few tokens on top of exactly that context (it holds
the request and the draft so far). Rather than wait for the draft to end, the reader hands its work to the
writer: the worker runs it between two tokens, when llama-cpp-python's generator is suspended at its `yield`
and the context is not in use, then goes on generating. So no two threads ever touch the context at once and
the generation never waits more than the read itself.

A job handed in after the generation ended (or while it was failing) is answered None without running: the
caller then reads in its own context, as it would have before. A job whose caller gave up before it started is
skipped. A job may raise `GenerationStateLost` (it could not put the context back as generation needs it):
that is re-raised in the writer too, so a draft never continues from a context that is not its own.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from chaperone.errors import ChaperoneError

# A job gets the position from which the generation evaluated its tokens one at a time (its prompt's end, or
# later), so it knows which of the context's tokens it may drop and evaluate again exactly as they were.
Job = Callable[[int], Any]


class GenerationStateLost(ChaperoneError):
    """A read between tokens could not restore the context the generation continues from: the draft stops."""


class BetweenTokens:
    """One generation's queue of jobs: handed in from any thread, run by the generating thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: deque[tuple[Job, Future[Any]]] = deque()
        self._open = True

    def submit(self, job: Job) -> Future[Any]:
        """Any thread. The job's result, or None at once when the generation has already ended."""
        done: Future[Any] = Future()
        with self._lock:
            if self._open:
                self._jobs.append((job, done))
                return done
        done.set_result(None)
        return done

    def run_pending(self, floor: int) -> None:
        """The generating thread, between two tokens: run every job handed in so far, in order."""
        while True:
            with self._lock:
                if not self._jobs:
                    return
                job, done = self._jobs.popleft()
            if not done.set_running_or_notify_cancel():
                continue  # its caller went away before it started: nothing to do, nothing touched
            try:
                result = job(floor)
            except GenerationStateLost as exc:
                done.set_exception(exc)
                raise  # the writer must not continue from a context that is not its own
            except BaseException as exc:  # the reader's problem (it falls back); the context is intact
                done.set_exception(exc)
            else:
                done.set_result(result)

    def close(self) -> None:
        """The generating thread, when it stops for good: jobs still waiting are answered None, later ones too."""
        with self._lock:
            self._open = False
            left = list(self._jobs)
            self._jobs.clear()
        for _, done in left:
            if done.set_running_or_notify_cancel():
                done.set_result(None)
