"""The per-stream gap timer behaves like ``asyncio.timeout`` around each wait."""

from __future__ import annotations

import asyncio

import pytest

from wardgate.routing.gaps import GapTimer

pytestmark = pytest.mark.timeout(30)


async def test_a_wait_longer_than_the_limit_times_out_and_leaves_the_task_usable() -> None:
    gaps = GapTimer(0.05)
    try:
        assert await gaps.wait(asyncio.sleep(0, "first")) == "first"
        with pytest.raises(TimeoutError):
            await gaps.wait(asyncio.Event().wait())  # never set: a stalled upstream
        task = asyncio.current_task()
        assert task is not None and task.cancelling() == 0
        # The task carries on (the stream is then ended with an error event).
        assert await gaps.wait(asyncio.sleep(0, "after")) == "after"
    finally:
        gaps.close()


async def test_time_between_waits_is_not_counted() -> None:
    # The consumer (a slow client) holds the stream longer than the limit between two
    # waits; each wait itself is immediate, so neither times out.
    gaps = GapTimer(0.2)
    try:
        for value in range(3):
            assert await gaps.wait(asyncio.sleep(0, value)) == value
            await asyncio.sleep(0.5)
    finally:
        gaps.close()


async def test_someone_elses_cancellation_stays_a_cancellation() -> None:
    started = asyncio.Event()

    async def stream() -> None:
        gaps = GapTimer(60)
        try:
            started.set()
            await gaps.wait(asyncio.Event().wait())
        finally:
            gaps.close()

    task = asyncio.create_task(stream())
    await started.wait()
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_waits_from_another_task_are_bounded_too() -> None:
    # Starlette pulls a stream's first chunk in the request task and the rest in its own.
    gaps = GapTimer(0.05)
    try:
        assert await gaps.wait(asyncio.sleep(0, 1)) == 1
        stalled = asyncio.create_task(gaps.wait(asyncio.Event().wait()))
        with pytest.raises(TimeoutError):
            await stalled
    finally:
        gaps.close()
