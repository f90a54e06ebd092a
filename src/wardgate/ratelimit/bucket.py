"""Token-bucket arithmetic shared by the in-process and Redis limiters.

The Redis limiter runs the same rules in Lua (``redis_limiter.py``); keeping the Python
version pure and small makes it the reference the tests pin down. Levels are floats: a
bucket refilled for 0.4 s at 1 token/s holds 0.4 tokens, and ``remaining`` shows the floor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from wardgate.ratelimit.base import BucketView, LimitDecision

SECONDS_PER_MINUTE = 60.0


def refilled(level: float, capacity: int, elapsed_s: float) -> float:
    """The level after ``elapsed_s`` of refill at ``capacity / 60`` per second, capped."""
    return min(float(capacity), level + max(0.0, elapsed_s) * capacity / SECONDS_PER_MINUTE)


def seconds_until(level: float, need: float, capacity: int) -> float:
    """Seconds of refill until ``level`` reaches ``need`` (0 when it already has)."""
    if level >= need:
        return 0.0
    return (need - level) * SECONDS_PER_MINUTE / capacity


def token_need(tokens: int, tpm: int) -> int:
    """Tokens the bucket must hold to admit a prompt of ``tokens``.

    Capped at the capacity: a prompt larger than a whole minute's budget is admitted when
    the bucket is full (and then pays its debt) instead of being refused forever.
    """
    return min(max(0, tokens), tpm)


def view(level: float, capacity: int) -> BucketView:
    return BucketView(
        limit=capacity,
        remaining=max(0, math.floor(level)),
        reset_s=seconds_until(level, capacity, capacity),
    )


@dataclass(frozen=True, slots=True)
class Outcome:
    """Raw result of one atomic check, from either implementation."""

    allowed: bool
    request_level: float
    token_level: float
    request_wait_s: float
    token_wait_s: float


def decision(outcome: Outcome, rpm: int, tpm: int) -> LimitDecision:
    """Turn a raw outcome into the decision the gateway reports."""
    refused_by: tuple[str, ...] = ()
    if not outcome.allowed:
        waits = (("requests", outcome.request_wait_s), ("tokens", outcome.token_wait_s))
        refused_by = tuple(name for name, wait in waits if wait > 0)
    return LimitDecision(
        allowed=outcome.allowed,
        retry_after_s=0.0 if outcome.allowed else max(outcome.request_wait_s, outcome.token_wait_s),
        requests=view(outcome.request_level, rpm) if rpm > 0 else None,
        tokens=view(outcome.token_level, tpm) if tpm > 0 else None,
        refused_by=refused_by,
    )
