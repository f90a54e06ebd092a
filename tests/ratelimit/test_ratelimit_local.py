"""In-process limiter: sliding-window semantics pinned with a fake clock.

The clock starts on a slot boundary (t = 1000 s); an admission at t stops counting once the
slot after t's 60-slot window begins, i.e. at floor(t) + 61.
"""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


async def test_rpm_allows_the_limit_then_refuses_until_the_window_has_passed(limiter, clock):
    for i in range(6):
        decision = await limiter.check("k", rpm=6, tpm=0, tokens=0)
        assert decision.allowed, i
        assert decision.requests is not None
        assert decision.requests.remaining == 5 - i
    refused = await limiter.check("k", rpm=6, tpm=0, tokens=0)
    assert not refused.allowed
    assert refused.refused_by == ("requests",)
    # Nothing refills gradually: the six admissions count for the whole window.
    assert refused.retry_after_s == pytest.approx(61.0)
    clock.advance(60.9)
    assert not (await limiter.check("k", rpm=6, tpm=0, tokens=0)).allowed
    clock.advance(0.1)
    assert [(await limiter.check("k", rpm=6, tpm=0, tokens=0)).allowed for _ in range(7)] == [
        *[True] * 6,
        False,
    ]


async def test_spread_load_never_exceeds_the_limit_in_any_window(limiter, clock):
    """Finding 6 of the outside review: RPM 20 spread evenly let 29 requests through in 30 s
    (a token bucket admits its capacity plus its refill)."""
    admitted: list[float] = []
    for _ in range(200):  # one request every 1.5 s for 300 s
        if (await limiter.check("k", rpm=20, tpm=0, tokens=0)).allowed:
            admitted.append(clock.now)
        clock.advance(1.5)
    assert max_in_any_window(admitted, 60.0) == 20
    first_30s = [t for t in admitted if t < admitted[0] + 30]
    assert len(first_30s) == 20  # a burst of the limit is still allowed
    assert len(admitted) >= 20 * 4  # and the limit is available again every ~61 s


@settings(max_examples=60, deadline=None)
@given(
    gaps=st.lists(st.floats(min_value=0.0, max_value=7.0), min_size=1, max_size=300),
    rpm=st.integers(min_value=1, max_value=30),
)
def test_no_arrival_pattern_gets_more_than_rpm_into_any_window(gaps, rpm):
    clock = FakeClock()
    limiter = LocalRateLimiter(clock=clock)
    admitted = []
    for gap in gaps:
        clock.advance(gap)
        if asyncio.run(limiter.check("k", rpm=rpm, tpm=0, tokens=0)).allowed:
            admitted.append(clock.now)
    assert max_in_any_window(admitted, 60.0) <= rpm


async def test_tpm_spread_load_never_exceeds_the_limit_in_any_window(limiter, clock):
    rng = random.Random(7)
    charged: list[tuple[float, int]] = []
    for _ in range(300):
        tokens = rng.randint(1, 120)
        if (await limiter.check("k", rpm=0, tpm=1000, tokens=tokens)).allowed:
            charged.append((clock.now, tokens))
        clock.advance(rng.uniform(0, 2))
    for start, _ in charged:
        assert sum(n for t, n in charged if start <= t < start + 60) <= 1000


def max_in_any_window(times: list[float], window: float) -> int:
    """The most events inside any half-open window of ``window`` seconds."""
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


async def test_an_idle_key_banks_nothing(limiter, clock):
    assert (await limiter.check("k", rpm=2, tpm=0, tokens=0)).allowed
    clock.advance(3600)
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
    assert refused.retry_after_s == pytest.approx(61.0)
    clock.advance(10)
    assert (await limiter.check("k", rpm=0, tpm=600, tokens=200)).allowed  # what still fits
    clock.advance(51)
    assert (await limiter.check("k", rpm=0, tpm=600, tokens=300)).allowed


async def test_completion_tokens_over_the_limit_make_the_next_request_wait(limiter, clock):
    assert (await limiter.check("k", rpm=0, tpm=600, tokens=100)).allowed
    await limiter.consume_tokens("k", tpm=600, tokens=1100)  # 1200 in the window
    refused = await limiter.check("k", rpm=0, tpm=600, tokens=0)
    assert not refused.allowed
    assert refused.tokens is not None and refused.tokens.remaining == 0
    assert refused.retry_after_s == pytest.approx(61.0)
    assert refused.tokens.reset_s == pytest.approx(61.0)
    clock.advance(61)
    assert (await limiter.check("k", rpm=0, tpm=600, tokens=0)).allowed


async def test_negative_consume_refunds_but_never_below_empty(limiter):
    assert (await limiter.check("k", rpm=0, tpm=100, tokens=80)).allowed
    await limiter.consume_tokens("k", tpm=100, tokens=-50)  # estimate was 50 too high
    decision = await limiter.check("k", rpm=0, tpm=100, tokens=0)
    assert decision.tokens is not None and decision.tokens.remaining == 70
    await limiter.consume_tokens("k", tpm=100, tokens=-10_000)
    decision = await limiter.check("k", rpm=0, tpm=100, tokens=0)
    assert decision.tokens is not None and decision.tokens.remaining == 100
    assert (await limiter.check("k", rpm=0, tpm=100, tokens=100)).allowed
    assert not (await limiter.check("k", rpm=0, tpm=100, tokens=1)).allowed  # no credit


async def test_prompt_larger_than_the_limit_is_admitted_only_into_an_empty_window(limiter, clock):
    assert (await limiter.check("k", rpm=0, tpm=100, tokens=500)).allowed
    refused = await limiter.check("k", rpm=0, tpm=100, tokens=500)
    assert not refused.allowed
    assert refused.retry_after_s == pytest.approx(61.0)


async def test_refusal_takes_nothing_from_either_limit(limiter):
    assert (await limiter.check("k", rpm=10, tpm=100, tokens=100)).allowed
    for _ in range(5):
        refused = await limiter.check("k", rpm=10, tpm=100, tokens=50)
        assert not refused.allowed
        assert refused.refused_by == ("tokens",)
    decision = await limiter.check("k", rpm=10, tpm=100, tokens=0)
    assert decision.allowed
    assert decision.requests is not None and decision.requests.remaining == 8


async def test_both_limits_refusing_reports_the_longer_wait(limiter, clock):
    assert (await limiter.check("k", rpm=1, tpm=60, tokens=30)).allowed
    clock.advance(30)
    assert (await limiter.check("k", rpm=2, tpm=60, tokens=30)).allowed
    refused = await limiter.check("k", rpm=2, tpm=60, tokens=30)
    assert refused.refused_by == ("requests", "tokens")
    # Either way the first admission must age out (at 1061): 31 s from now.
    assert refused.retry_after_s == pytest.approx(31.0)


async def test_lowering_a_limit_counts_what_was_already_admitted(limiter):
    assert (await limiter.check("k", rpm=100, tpm=0, tokens=0)).allowed
    decision = await limiter.check("k", rpm=3, tpm=0, tokens=0)
    assert decision.allowed
    assert decision.requests is not None and decision.requests.remaining == 1


async def test_concurrent_tasks_share_one_budget_exactly(limiter):
    decisions = await asyncio.gather(
        *(limiter.check("k", rpm=50, tpm=0, tokens=0) for _ in range(200))
    )
    assert sum(d.allowed for d in decisions) == 50


async def test_idle_windows_are_swept_without_changing_decisions(clock):
    limiter = LocalRateLimiter(clock=clock, sweep_interval_s=60)
    for i in range(100):
        await limiter.check(f"idle-{i}", rpm=60, tpm=0, tokens=0)
    clock.advance(30)
    assert (await limiter.check("busy", rpm=1, tpm=0, tokens=0)).allowed
    assert len(limiter) == 101
    clock.advance(31)  # the idle keys' window has passed, "busy"'s has not
    await limiter.check("other", rpm=1, tpm=0, tokens=0)  # this check sweeps
    assert len(limiter) == 2
    assert not (await limiter.check("busy", rpm=1, tpm=0, tokens=0)).allowed


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
        "x-ratelimit-reset-requests": "1m1s",
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "990",
        "x-ratelimit-reset-tokens": "1m1s",
        "retry-after": "61",
        "retry-after-ms": "61000",
    }


async def test_factory_without_redis_is_local():
    limiter = create_rate_limiter(None)
    assert isinstance(limiter, LocalRateLimiter)
    assert (await limiter.check("k", rpm=1, tpm=0, tokens=0)).allowed
    await limiter.aclose()
