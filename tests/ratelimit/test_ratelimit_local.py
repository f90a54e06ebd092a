"""In-process limiter: token-bucket semantics pinned with a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from wardgate.errors import RateLimited
from wardgate.ratelimit import LocalRateLimiter, create_rate_limiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def limiter(clock: FakeClock) -> LocalRateLimiter:
    return LocalRateLimiter(clock=clock)


async def test_rpm_allows_capacity_then_refuses_with_exact_wait(limiter, clock):
    for i in range(6):
        decision = await limiter.check("k", rpm=6, tpm=0, tokens=0)
        assert decision.allowed, i
        assert decision.requests is not None
        assert decision.requests.remaining == 5 - i
    refused = await limiter.check("k", rpm=6, tpm=0, tokens=0)
    assert not refused.allowed
    assert refused.refused_by == ("requests",)
    # 6 per minute refills one request every 10 s.
    assert refused.retry_after_s == pytest.approx(10.0)
    clock.advance(9.9)
    assert not (await limiter.check("k", rpm=6, tpm=0, tokens=0)).allowed
    clock.advance(0.1)
    assert (await limiter.check("k", rpm=6, tpm=0, tokens=0)).allowed
    assert not (await limiter.check("k", rpm=6, tpm=0, tokens=0)).allowed


async def test_refill_is_capped_at_capacity(limiter, clock):
    assert (await limiter.check("k", rpm=2, tpm=0, tokens=0)).allowed
    clock.advance(3600)  # an hour idle must not bank more than one minute's budget
    allowed = [(await limiter.check("k", rpm=2, tpm=0, tokens=0)).allowed for _ in range(4)]
    assert allowed == [True, True, False, False]


async def test_keys_are_independent(limiter):
    assert (await limiter.check("a", rpm=1, tpm=0, tokens=0)).allowed
    assert not (await limiter.check("a", rpm=1, tpm=0, tokens=0)).allowed
    assert (await limiter.check("b", rpm=1, tpm=0, tokens=0)).allowed


async def test_zero_means_unlimited_and_keeps_no_state(limiter):
    for _ in range(1000):
        decision = await limiter.check("k", rpm=0, tpm=0, tokens=10**6)
        assert decision.allowed
    assert decision.headers() == {}
    assert len(limiter) == 0


async def test_tpm_checks_prompt_estimate_and_charges_it(limiter, clock):
    first = await limiter.check("k", rpm=0, tpm=600, tokens=400)
    assert first.allowed
    assert first.tokens is not None and first.tokens.remaining == 200
    assert first.requests is None  # unlimited requests: no request headers
    refused = await limiter.check("k", rpm=0, tpm=600, tokens=300)
    assert not refused.allowed
    assert refused.refused_by == ("tokens",)
    # 600/min is 10 tokens/s; 100 missing tokens take 10 s.
    assert refused.retry_after_s == pytest.approx(10.0)
    clock.advance(10)
    assert (await limiter.check("k", rpm=0, tpm=600, tokens=300)).allowed


async def test_completion_tokens_push_bucket_negative_so_next_request_waits(limiter, clock):
    assert (await limiter.check("k", rpm=0, tpm=600, tokens=100)).allowed
    await limiter.consume_tokens("k", tpm=600, tokens=1100)  # level 600-100-1100 = -600
    refused = await limiter.check("k", rpm=0, tpm=600, tokens=0)
    assert not refused.allowed
    assert refused.tokens is not None and refused.tokens.remaining == 0
    assert refused.retry_after_s == pytest.approx(60.0)  # 600 tokens of debt at 10/s
    assert refused.tokens.reset_s == pytest.approx(120.0)
    clock.advance(60)
    assert (await limiter.check("k", rpm=0, tpm=600, tokens=0)).allowed


async def test_negative_consume_refunds_but_not_beyond_capacity(limiter):
    assert (await limiter.check("k", rpm=0, tpm=100, tokens=80)).allowed
    await limiter.consume_tokens("k", tpm=100, tokens=-50)  # estimate was 50 too high
    decision = await limiter.check("k", rpm=0, tpm=100, tokens=0)
    assert decision.tokens is not None and decision.tokens.remaining == 70
    await limiter.consume_tokens("k", tpm=100, tokens=-10_000)
    decision = await limiter.check("k", rpm=0, tpm=100, tokens=0)
    assert decision.tokens is not None and decision.tokens.remaining == 100


async def test_prompt_larger_than_budget_is_admitted_only_from_a_full_bucket(limiter, clock):
    assert (await limiter.check("k", rpm=0, tpm=100, tokens=500)).allowed  # full bucket
    refused = await limiter.check("k", rpm=0, tpm=100, tokens=500)
    assert not refused.allowed
    # level is -400; it must refill to the full 100 → 500 tokens at 100/60 per second.
    assert refused.retry_after_s == pytest.approx(300.0)


async def test_refusal_takes_nothing_from_either_bucket(limiter):
    assert (await limiter.check("k", rpm=10, tpm=100, tokens=100)).allowed
    for _ in range(5):
        refused = await limiter.check("k", rpm=10, tpm=100, tokens=50)
        assert not refused.allowed
        assert refused.refused_by == ("tokens",)
    decision = await limiter.check("k", rpm=10, tpm=100, tokens=0)
    assert decision.allowed
    assert decision.requests is not None and decision.requests.remaining == 8


async def test_both_limits_refusing_reports_the_longer_wait(limiter):
    assert (await limiter.check("k", rpm=1, tpm=60, tokens=60)).allowed
    refused = await limiter.check("k", rpm=1, tpm=60, tokens=30)
    assert refused.refused_by == ("requests", "tokens")
    assert refused.retry_after_s == pytest.approx(60.0)  # requests: 60 s, tokens: 30 s


async def test_lowering_a_limit_clamps_the_stored_level(limiter):
    assert (await limiter.check("k", rpm=100, tpm=0, tokens=0)).allowed
    decision = await limiter.check("k", rpm=3, tpm=0, tokens=0)
    assert decision.allowed
    assert decision.requests is not None and decision.requests.remaining == 2


async def test_concurrent_tasks_share_one_budget_exactly(limiter):
    decisions = await asyncio.gather(
        *(limiter.check("k", rpm=50, tpm=0, tokens=0) for _ in range(200))
    )
    assert sum(d.allowed for d in decisions) == 50


async def test_idle_buckets_are_swept_without_changing_decisions(clock):
    limiter = LocalRateLimiter(clock=clock, sweep_interval_s=60)
    for i in range(100):
        await limiter.check(f"idle-{i}", rpm=60, tpm=0, tokens=0)
    assert (await limiter.check("busy", rpm=1, tpm=0, tokens=0)).allowed
    assert len(limiter) == 101
    clock.advance(30)  # idle keys are full after 1 s, but "busy" needs 60 s
    assert not (await limiter.check("busy", rpm=1, tpm=0, tokens=0)).allowed  # no sweep yet
    clock.advance(30)
    await limiter.check("other", rpm=1, tpm=0, tokens=0)  # this check sweeps
    assert len(limiter) == 1  # only "other": "busy" had refilled at exactly 60 s
    assert (await limiter.check("busy", rpm=1, tpm=0, tokens=0)).allowed


async def test_swept_key_still_in_debt_is_kept(clock):
    limiter = LocalRateLimiter(clock=clock, sweep_interval_s=1)
    assert (await limiter.check("k", rpm=0, tpm=60, tokens=0)).allowed
    await limiter.consume_tokens("k", tpm=60, tokens=600)  # 10 minutes of debt
    clock.advance(120)
    await limiter.check("x", rpm=1, tpm=0, tokens=0)
    assert len(limiter) == 2
    assert not (await limiter.check("k", rpm=0, tpm=60, tokens=0)).allowed


async def test_max_keys_bounds_memory(clock):
    limiter = LocalRateLimiter(clock=clock, max_keys=10)
    for i in range(1000):
        await limiter.check(f"k{i}", rpm=1, tpm=0, tokens=0)
        assert len(limiter) <= 10
    assert len(limiter) == 10


async def test_refusal_becomes_a_429_with_openai_headers(limiter):
    await limiter.check("k", rpm=1, tpm=1000, tokens=10)
    refused = await limiter.check("k", rpm=1, tpm=1000, tokens=10)
    error = refused.error()
    assert isinstance(error, RateLimited)
    assert error.status == 429 and error.code == "rate_limit_exceeded"
    assert "requests" in error.message
    assert error.headers == {
        "x-ratelimit-limit-requests": "1",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "1m0s",
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "990",
        "x-ratelimit-reset-tokens": "600ms",
        "retry-after": "60",
        "retry-after-ms": "60000",
    }


async def test_factory_without_redis_is_local():
    limiter = create_rate_limiter(None)
    assert isinstance(limiter, LocalRateLimiter)
    assert (await limiter.check("k", rpm=1, tpm=0, tokens=0)).allowed
    await limiter.aclose()
