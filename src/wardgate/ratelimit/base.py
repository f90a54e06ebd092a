"""The rate-limiter interface and the decision it returns.

Two limits apply per API key, both over a sliding 60-second window (see
:mod:`wardgate.ratelimit.window`), so "N per minute" means at most N in *any* 60 seconds:

* **requests per minute** (RPM): a request is admitted when fewer than ``rpm`` were admitted
  in the window.
* **tokens per minute** (TPM): ``check`` admits a request only when the window's tokens plus
  the prompt-token estimate fit ``tpm`` (a prompt larger than the whole limit fits only an
  empty window, so it is not refused forever) and records that estimate; ``consume_tokens``
  later records what the answer actually used. That second charge may take the window past
  the limit, so a key that overspent waits until it ages out — generation length is unknown
  up front, and charging ``max_tokens`` in advance would refuse honest clients that ask for
  long limits but get short answers.

A limit of 0 means unlimited and costs nothing (no state, no Redis round trip).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from wardgate.errors import RateLimited


@dataclass(frozen=True, slots=True)
class BucketView:
    """One bucket as a client sees it: for the ``x-ratelimit-*`` headers."""

    limit: int
    remaining: int
    #: Seconds until the window is empty again (OpenAI's ``reset`` semantics).
    reset_s: float


@dataclass(frozen=True, slots=True)
class LimitDecision:
    """The outcome of :meth:`RateLimiter.check` for one request."""

    allowed: bool
    #: Seconds until a request like this one would be admitted; 0 when allowed.
    retry_after_s: float = 0.0
    #: ``None`` when that limit is unlimited (0): no headers are sent for it.
    requests: BucketView | None = None
    tokens: BucketView | None = None
    #: Which limits refused the request: ``("requests",)``, ``("tokens",)`` or both.
    refused_by: tuple[str, ...] = ()

    def headers(self) -> dict[str, str]:
        """OpenAI's rate-limit headers, plus ``Retry-After`` when the request was refused."""
        out: dict[str, str] = {}
        for name, view in (("requests", self.requests), ("tokens", self.tokens)):
            if view is None:
                continue
            out[f"x-ratelimit-limit-{name}"] = str(view.limit)
            out[f"x-ratelimit-remaining-{name}"] = str(view.remaining)
            out[f"x-ratelimit-reset-{name}"] = format_duration(view.reset_s)
        if not self.allowed:
            # HTTP wants whole seconds; never 0, or naive clients retry in a hot loop.
            out["retry-after"] = str(max(1, math.ceil(self.retry_after_s)))
            out["retry-after-ms"] = str(max(1, math.ceil(self.retry_after_s * 1000)))
        return out

    def error(self) -> RateLimited:
        """The error to raise for a refused request, carrying the headers."""
        what = " and ".join(self.refused_by) or "requests"
        return RateLimited(
            f"rate limit exceeded for {what} per minute; retry after "
            f"{max(1, math.ceil(self.retry_after_s))} s",
            headers=self.headers(),
        )


def unlimited() -> LimitDecision:
    """The decision when both limits are 0."""
    return LimitDecision(allowed=True)


def format_duration(seconds: float) -> str:
    """OpenAI's duration style: ``20ms``, ``1.5s``, ``6m0s``."""
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    minutes, rest = divmod(round(seconds, 3), 60)  # 59.9999 s is "1m0s", not "60s"
    text = f"{rest:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{int(minutes)}m{text}" if minutes else text


@runtime_checkable
class RateLimiter(Protocol):
    """Per-key RPM/TPM limits. Implementations must be safe to share across tasks."""

    async def check(self, key_id: str, rpm: int, tpm: int, tokens: int) -> LimitDecision:
        """Admit one request estimated at ``tokens`` prompt tokens, or say how long to wait.

        An admitted request has taken one request and ``tokens`` tokens. Raises
        :class:`~wardgate.errors.Overloaded` (``rate_limiter_unavailable``) when the limiter
        cannot decide — the gateway fails closed.
        """
        ...

    async def consume_tokens(self, key_id: str, tpm: int, tokens: int) -> None:
        """Charge tokens used after admission (may go negative; negative ``tokens`` refunds).

        Best effort: the answer has already been served, so an unavailable store is logged,
        not raised — the next ``check`` fails closed anyway.
        """
        ...

    async def aclose(self) -> None:
        """Release connections. Safe to call twice."""
        ...
