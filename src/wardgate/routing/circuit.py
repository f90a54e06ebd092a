"""A circuit breaker per backend, so a dead model costs one fast refusal instead of a timeout.

States: **closed** (calls pass; consecutive failures are counted) → **open** after
``failure_threshold`` consecutive failures (calls are refused without touching the backend)
→ **half_open** once ``reset_after_s`` has passed, when exactly one trial call goes through:
its success closes the circuit, its failure opens it again for another ``reset_after_s``.

Callers take a :class:`Permit` before calling the backend and hand it back with the outcome,
so the breaker knows whether an answer came from *the* half-open trial. A trial that never
reports (a bug, a lost task) stops blocking after another ``reset_after_s``.

The clock is injected so tests can move time without sleeping.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class Clock(Protocol):
    """Time for failover: a monotonic reading and a way to wait."""

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class Permit:
    """Leave to make one call; ``trial`` marks the single half-open probe."""

    trial: bool = False


class CircuitBreaker:
    """Consecutive-failure breaker for one backend. Not thread-safe; one event loop owns it."""

    def __init__(
        self, failure_threshold: int, reset_after_s: float, clock: Callable[[], float]
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if reset_after_s <= 0:
            raise ValueError("reset_after_s must be positive")
        self.failure_threshold = failure_threshold
        self.reset_after_s = reset_after_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_started: float | None = None

    @property
    def state(self) -> CircuitState:
        if self._opened_at is None:
            return CircuitState.CLOSED
        if self._clock() - self._opened_at >= self.reset_after_s:
            return CircuitState.HALF_OPEN
        return CircuitState.OPEN

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def retry_after_s(self) -> float:
        """Seconds until the next trial may go through (0 when closed)."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self.reset_after_s - self._clock())

    def try_acquire(self) -> Permit | None:
        """A permit to call the backend, or ``None`` when the circuit refuses."""
        state = self.state
        if state is CircuitState.CLOSED:
            return Permit()
        if state is CircuitState.OPEN:
            return None
        now = self._clock()
        if self._trial_started is not None and now - self._trial_started < self.reset_after_s:
            return None  # one trial at a time
        self._trial_started = now
        return Permit(trial=True)

    def success(self, permit: Permit) -> None:
        """The backend answered: any success is evidence it is healthy again."""
        self._failures = 0
        self._opened_at = None
        self._trial_started = None

    def failure(self, permit: Permit | None = None) -> None:
        """The backend failed in a way that says something about its health.

        ``permit`` is ``None`` for a failure after the call was already counted a success
        (a stream that broke after its first chunk).
        """
        now = self._clock()
        if permit is not None and permit.trial:
            self._opened_at = now  # the probe failed: stay open for another period
            self._trial_started = None
            return
        self._failures += 1
        if self._opened_at is None and self._failures >= self.failure_threshold:
            self._opened_at = now

    def release(self, permit: Permit) -> None:
        """The call ended without a verdict (cancelled, or the request's own fault)."""
        if permit.trial:
            self._trial_started = None
