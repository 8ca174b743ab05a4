"""A blocking llama.cpp call run in a worker thread that its caller's cancellation cannot orphan.

A forward pass cannot be stopped once it started. If the awaiting task were cancelled and simply went on,
the thread would keep computing in a context that the task's cleanup (a turn's end, a server's shutdown
closing the models) may free under it: a segmentation fault, not an exception. So a cancelled caller
waits for the thread to end, however many times it is cancelled meanwhile, and only then is cancelled."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def run_to_end(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` in a worker thread; a cancellation takes effect once the call has returned."""
    work = asyncio.ensure_future(asyncio.to_thread(functools.partial(fn, *args, **kwargs)))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        while not work.done():
            try:
                await asyncio.wait({work})
            except asyncio.CancelledError:  # cancelled again while waiting: still not before the thread ends
                continue
        raise
