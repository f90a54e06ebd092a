"""Choose the rate limiter from configuration."""

from __future__ import annotations

from wardgate.ratelimit.base import RateLimiter
from wardgate.ratelimit.local import LocalRateLimiter
from wardgate.ratelimit.redis_limiter import RedisRateLimiter


def create_rate_limiter(
    redis_url: str | None, *, prefix: str = "wardgate:rl:", ttl_s: float = 1.0
) -> RateLimiter:
    """In-process limits without ``redis_url``; limits shared through Redis with it.

    Creating the Redis limiter does not connect: the first check does, and fails closed.
    """
    if redis_url:
        return RedisRateLimiter.from_url(redis_url, prefix=prefix, ttl_s=ttl_s)
    return LocalRateLimiter()
