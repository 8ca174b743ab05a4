"""The hand-off of a read to the thread that generates (chaperone.models.between_tokens), with plain callables:
jobs run in the writing thread, in order, between tokens; after the generation ended they are answered None."""

from __future__ import annotations

import threading

import pytest

from chaperone.models.between_tokens import BetweenTokens, GenerationStateLost


def test_jobs_run_in_the_writing_thread_in_order_with_the_floor():
    between = BetweenTokens()
    ran: list[tuple[str, int, str]] = []
    first = between.submit(lambda floor: ran.append(("a", floor, threading.current_thread().name)) or "A")
    second = between.submit(lambda floor: ran.append(("b", floor, threading.current_thread().name)) or "B")
    assert not first.done()  # nothing runs until the writer is between two tokens

    writer = threading.Thread(target=between.run_pending, args=(17,), name="writer")
    writer.start()
    writer.join()
    assert ran == [("a", 17, "writer"), ("b", 17, "writer")]
    assert first.result() == "A" and second.result() == "B"
    between.run_pending(17)  # nothing left: nothing runs again
    assert len(ran) == 2


def test_after_the_generation_ended_jobs_are_answered_none_without_running():
    between = BetweenTokens()
    ran = []
    waiting = between.submit(lambda floor: ran.append(floor))
    between.close()  # the draft ended before the writer reached a token boundary
    late = between.submit(lambda floor: ran.append(floor))
    between.run_pending(3)
    assert waiting.result() is None and late.result() is None and ran == []


def test_a_job_whose_caller_gave_up_is_skipped():
    between = BetweenTokens()
    ran = []
    gone = between.submit(lambda floor: ran.append("gone"))
    kept = between.submit(lambda floor: ran.append("kept") or 1)
    assert gone.cancel()
    between.run_pending(0)
    assert ran == ["kept"] and kept.result() == 1


def test_a_failed_read_goes_to_its_caller_and_the_writer_goes_on():
    between = BetweenTokens()

    def broken(floor):
        raise ValueError("capture failed")

    failed = between.submit(broken)
    after = between.submit(lambda floor: "after")
    between.run_pending(0)  # does not raise: the context is intact, only the reader falls back
    with pytest.raises(ValueError):
        failed.result()
    assert after.result() == "after"


def test_a_context_that_could_not_be_restored_stops_the_writer_too():
    between = BetweenTokens()

    def lost(floor):
        raise GenerationStateLost("restore failed")

    failed = between.submit(lost)
    with pytest.raises(GenerationStateLost):
        between.run_pending(0)
    with pytest.raises(GenerationStateLost):
        failed.result()
