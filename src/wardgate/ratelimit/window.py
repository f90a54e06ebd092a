"""Sliding-window arithmetic shared by the in-process and Redis limiters.

"RPM = N" means at most N admitted requests in *any* 60-second window, whichever second it
starts on, and "TPM = T" the same for tokens. A token bucket (capacity N, refilling N per
minute) cannot promise that: it admits its full capacity and then its refill, up to 2N in a
minute — the outside review counted 29 admissions in 30 s at RPM 20.

The window is kept as :data:`SLOTS` + 1 one-second counters (``window_s / SLOTS`` seconds
each): the current slot and the 60 before it. Counting all of them covers any 60-second
window that ends now, so the promise holds exactly; the price is that an admission is
forgotten after 60 to 61 seconds instead of exactly 60. Memory is bounded by 61 counters
per active key, whatever the limit.

Tokens: a request is admitted when the window's tokens plus its prompt estimate fit the
limit (a prompt larger than the whole limit only into an empty window, or it would never
pass); :meth:`~wardgate.ratelimit.base.RateLimiter.consume_tokens` later adds what the answer
actually used, which can take the window over the limit — the key then waits until that
ages out. Refunds (the estimate was too high) come off the newest slots and never below
zero, so they cannot create credit. The Redis limiter runs the same rules in Lua.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from wardgate.ratelimit.base import BucketView, LimitDecision

WINDOW_S = 60.0
#: Slots per window; one more (the current one) is counted.
SLOTS = 60


def slot_of(now: float, window_s: float = WINDOW_S) -> int:
    return math.floor(now * SLOTS / window_s)


def first_live_slot(current: int) -> int:
    """The oldest slot that still counts at ``current``."""
    return current - SLOTS


def slot_expires_at(slot: int, window_s: float = WINDOW_S) -> float:
    """When ``slot`` stops counting: once the current slot is ``slot + SLOTS + 1``."""
    return (slot + SLOTS + 1) * window_s / SLOTS


def wait_for(
    slots: Iterable[tuple[int, float]],
    used: float,
    need: float,
    limit: int,
    now: float,
    window_s: float = WINDOW_S,
) -> float:
    """Seconds until ``need`` more fits under ``limit`` (0 if it fits now).

    ``slots`` are ``(slot, amount)`` oldest first; each stops counting at its expiry.
    """
    excess = used + need - limit
    if excess <= 0:
        return 0.0
    for slot, amount in slots:
        excess -= amount
        if excess <= 0:
            return max(0.0, slot_expires_at(slot, window_s) - now)
    # Unreachable while ``used`` is the sum of the slots and ``need <= limit``; if it ever
    # is reached, refuse for a whole window rather than admit.
    return window_s


def token_need(tokens: int, tpm: int) -> int:
    """Tokens a prompt must find room for: capped at the limit (see the module docstring)."""
    return min(max(0, tokens), tpm)


def view(used: float, limit: int, reset_s: float) -> BucketView:
    return BucketView(limit=limit, remaining=max(0, limit - math.ceil(used)), reset_s=reset_s)


@dataclass(frozen=True, slots=True)
class Outcome:
    """Raw result of one atomic check, from either implementation."""

    allowed: bool
    requests_used: float
    tokens_used: float
    request_wait_s: float
    token_wait_s: float
    #: Seconds until the window is empty again (OpenAI's ``reset``).
    reset_s: float


def decision(outcome: Outcome, rpm: int, tpm: int) -> LimitDecision:
    """Turn a raw outcome into the decision the gateway reports."""
    refused_by: tuple[str, ...] = ()
    if not outcome.allowed:
        waits = (("requests", outcome.request_wait_s), ("tokens", outcome.token_wait_s))
        refused_by = tuple(name for name, wait in waits if wait > 0)
    return LimitDecision(
        allowed=outcome.allowed,
        retry_after_s=0.0 if outcome.allowed else max(outcome.request_wait_s, outcome.token_wait_s),
        requests=view(outcome.requests_used, rpm, outcome.reset_s) if rpm > 0 else None,
        tokens=view(outcome.tokens_used, tpm, outcome.reset_s) if tpm > 0 else None,
        refused_by=refused_by,
    )
