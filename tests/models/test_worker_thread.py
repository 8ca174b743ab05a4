"""A blocking call in a worker thread outlives no cancelled caller (chaperone.models.worker_thread)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from chaperone.models.worker_thread import run_to_end


async def started_call():
    started, release, ended = threading.Event(), threading.Event(), threading.Event()

    def forward_pass(x, *, y):
        started.set()
        release.wait(5)
        ended.set()
        return x + y

    task = asyncio.ensure_future(run_to_end(forward_pass, 1, y=2))
    while not started.is_set():
        await asyncio.sleep(0.01)
    return task, release, ended


async def test_the_result_comes_back_from_the_thread():
    task, release, _ = await started_call()
    release.set()
    assert await task == 3


async def test_a_caller_cancelled_again_and_again_still_waits_for_the_thread_then_is_cancelled():
    """The second cancellation is the one that used to let a caller go while its thread still computed."""
    task, release, ended = await started_call()
    for _ in range(3):
        task.cancel()
        await asyncio.sleep(0.03)
        assert not task.done() and not ended.is_set()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ended.is_set() and task.cancelled()
