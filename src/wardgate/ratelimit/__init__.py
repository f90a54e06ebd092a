"""Per-key request and token rate limits, in-process or shared through Redis."""

from wardgate.ratelimit.base import BucketView, LimitDecision, RateLimiter, format_duration
from wardgate.ratelimit.factory import create_rate_limiter
from wardgate.ratelimit.local import LocalRateLimiter
from wardgate.ratelimit.redis_limiter import RedisRateLimiter

__all__ = [
    "BucketView",
    "LimitDecision",
    "LocalRateLimiter",
    "RateLimiter",
    "RedisRateLimiter",
    "create_rate_limiter",
    "format_duration",
]
