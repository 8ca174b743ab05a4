"""An endpoint's max_concurrency slots: a task started inside a held slot (a chunk review beside its draft)
rides on it instead of waiting for one of its own, which, with every slot held by drafts waiting for their
chunks' verdicts, would never come."""

from __future__ import annotations

import asyncio

from chaperone.models.pool import ModelHandle


def handle(limit: int) -> ModelHandle:
    return ModelHandle("m", spec=None, client=None, limit=asyncio.Semaphore(limit))


async def test_a_task_started_inside_a_held_slot_does_not_wait_for_another():
    model = handle(1)

    async def review() -> str:
        async with model.slot():
            return "judged"

    async with model.slot():  # the draft's stream holds the only slot
        assert await asyncio.wait_for(asyncio.ensure_future(review()), timeout=5) == "judged"


async def test_other_callers_still_wait_for_a_free_slot():
    model = handle(1)
    order: list[str] = []
    release = asyncio.Event()

    async def holder() -> None:
        async with model.slot():
            order.append("holder in")
            await release.wait()
        order.append("holder out")

    async def other() -> None:
        async with model.slot():
            order.append("other in")

    first = asyncio.ensure_future(holder())
    await asyncio.sleep(0)
    second = asyncio.ensure_future(other())  # started outside the holder's slot: must wait
    for _ in range(5):
        await asyncio.sleep(0)
    assert order == ["holder in"]
    release.set()
    await asyncio.gather(first, second)
    assert order == ["holder in", "holder out", "other in"]
