"""One timer per stream for the limit on each gap between its chunks.

``asyncio.timeout`` around every wait for a chunk schedules a loop timer and cancels it
again per chunk, for a limit that almost never fires (a stream's ``timeout_s`` is tens of
seconds, its chunks milliseconds apart). :class:`GapTimer` keeps one timer per stream: a
wait only writes its deadline, and the timer, when it comes due, either finds the stream
still waiting past that deadline (and times it out, as ``asyncio.timeout`` would) or sets
itself for the deadline of the wait now in progress. Time the stream's consumer spends
between waits (a slow client) is never counted, exactly as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")

#: Loop timers may run a little before their time (asyncio allows its clock resolution);
#: a deadline this close counts as reached rather than rescheduling a timer for it.
_SLACK_S = 0.001


class GapTimer:
    """``await gaps.wait(x)`` is ``async with asyncio.timeout(limit_s): await x``.

    Use one per stream, from one task at a time, and :meth:`close` it when the stream ends.
    """

    __slots__ = ("_deadline", "_expired", "_handle", "_limit", "_loop", "_task")

    def __init__(self, limit_s: float) -> None:
        self._limit = limit_s
        self._loop = asyncio.get_running_loop()
        self._deadline: float | None = None  # None: no wait in progress
        self._handle: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[object] | None = None
        self._expired = False

    async def wait(self, awaitable: Awaitable[T]) -> T:
        """``await awaitable``, raising :class:`TimeoutError` if it takes over ``limit_s``."""
        # The task is taken per wait: a stream's first chunk may be pulled by another task
        # than the rest (Starlette streams the body from a task of its own).
        self._task = asyncio.current_task()
        self._deadline = deadline = self._loop.time() + self._limit
        if self._handle is None:
            self._handle = self._loop.call_at(deadline, self._due)
        try:
            return await awaitable
        except asyncio.CancelledError:
            task = self._task
            if self._expired and task is not None:
                self._expired = False
                # Ours alone (no one else asked to cancel the task): it is a timeout.
                if task.uncancel() == 0:
                    raise TimeoutError from None
            raise
        finally:
            self._deadline = None
            if self._expired and self._task is not None:
                # The awaitable finished in spite of the cancellation: withdraw it.
                self._expired = False
                self._task.uncancel()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _due(self) -> None:
        self._handle = None
        deadline = self._deadline
        if deadline is None:
            return  # between waits: the next wait sets the timer again
        if self._loop.time() + _SLACK_S >= deadline:
            if self._task is not None and not self._task.done():
                self._expired = True
                self._task.cancel()
            return
        self._handle = self._loop.call_at(deadline, self._due)
