"""Redis limiter against the real Redis at 127.0.0.1:6379, one key prefix per test."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from wardgate.errors import Overloaded
from wardgate.ratelimit import LocalRateLimiter, RedisRateLimiter, create_rate_limiter

REDIS_URL = "redis://127.0.0.1:6379/0"
SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    value = f"wardgate-test:rl:{uuid.uuid4().hex}:"
    yield value
    client = aioredis.Redis.from_url(REDIS_URL)
    keys = [key async for key in client.scan_iter(match=value + "*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
async def limiter(prefix: str) -> AsyncIterator[RedisRateLimiter]:
    limiter = RedisRateLimiter.from_url(REDIS_URL, prefix=prefix)
    yield limiter
    await limiter.aclose()


async def test_rpm_allows_capacity_then_refuses(limiter):
    remaining = []
    for _ in range(6):
        decision = await limiter.check("k", rpm=6, tpm=0, tokens=0)
        assert decision.allowed
        remaining.append(decision.requests.remaining)
    assert remaining == [5, 4, 3, 2, 1, 0]
    refused = await limiter.check("k", rpm=6, tpm=0, tokens=0)
    assert not refused.allowed
    assert refused.refused_by == ("requests",)
    # The six count until their one-second slot leaves the window: 60 to 61 s from now.
    assert 59.0 < refused.retry_after_s <= 61.0
    assert refused.headers()["retry-after"] in ("60", "61")


async def test_two_clients_share_one_budget(prefix):
    first = RedisRateLimiter.from_url(REDIS_URL, prefix=prefix)
    second = RedisRateLimiter.from_url(REDIS_URL, prefix=prefix)
    try:
        allowed = 0
        for i in range(20):
            client = first if i % 2 else second
            allowed += (await client.check("shared", rpm=10, tpm=0, tokens=0)).allowed
        assert allowed == 10
    finally:
        await first.aclose()
        await second.aclose()


async def test_tokens_debt_and_refund(limiter):
    assert (await limiter.check("k", rpm=0, tpm=600, tokens=100)).allowed
    await limiter.consume_tokens("k", tpm=600, tokens=1100)
    refused = await limiter.check("k", rpm=0, tpm=600, tokens=0)
    assert not refused.allowed
    assert refused.refused_by == ("tokens",)
    assert 59.0 < refused.retry_after_s <= 61.0
    await limiter.consume_tokens("k", tpm=600, tokens=-10_000)  # refund, never below empty
    decision = await limiter.check("k", rpm=0, tpm=600, tokens=0)
    assert decision.allowed and decision.tokens.remaining == 600


async def test_consume_keeps_the_request_bucket(limiter):
    assert (await limiter.check("k", rpm=2, tpm=100, tokens=0)).allowed
    await limiter.consume_tokens("k", tpm=100, tokens=10)
    decision = await limiter.check("k", rpm=2, tpm=100, tokens=0)
    assert decision.allowed
    assert decision.requests.remaining == 0  # the first request was not forgotten
    assert decision.tokens.remaining == 90


async def test_refusal_takes_nothing(limiter):
    assert (await limiter.check("k", rpm=10, tpm=100, tokens=100)).allowed
    for _ in range(3):
        assert not (await limiter.check("k", rpm=10, tpm=100, tokens=50)).allowed
    decision = await limiter.check("k", rpm=10, tpm=100, tokens=0)
    assert decision.requests.remaining == 8


async def test_keys_expire_when_their_window_has_passed(limiter, prefix):
    await limiter.check("k", rpm=6, tpm=0, tokens=0)
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        ttl_ms = await client.pttl(prefix + "k")
        assert 59_000 < ttl_ms <= 61_000
        assert await client.hlen(prefix + "k") == 1  # one slot, whatever the limit
    finally:
        await client.aclose()


async def test_spread_load_across_two_replicas_never_exceeds_the_limit(prefix):
    """Finding 6 of the outside review: RPM 20 spread evenly across two replicas let 29
    through in 30 s. Scaled to a 2 s window (same slot arithmetic): two replicas alternate,
    offering twice the limit per window for 1.5 windows."""
    window, rpm = 2.0, 10
    replicas = [
        RedisRateLimiter.from_url(REDIS_URL, prefix=prefix, window_s=window) for _ in range(2)
    ]
    admitted: list[tuple[float, float]] = []  # (sent, answered) of each admission
    try:
        started = time.time()
        for i in range(30):
            await asyncio.sleep(max(0.0, started + i * window / (2 * rpm) - time.time()))
            sent = time.time()
            decision = await replicas[i % 2].check("spread", rpm=rpm, tpm=0, tokens=0)
            if decision.allowed:
                admitted.append((sent, time.time()))
    finally:
        for replica in replicas:
            await replica.aclose()
    # The first window's worth of offers (0 .. 1 s) saw exactly the limit admitted ...
    assert len([a for a in admitted if a[0] < started + window / 2]) == rpm
    # ... and no rpm + 1 admissions ever fell within one window: the (k + rpm)-th admission
    # came more than a window after the k-th, measured as generously as the clocks allow.
    for k in range(len(admitted) - rpm):
        assert admitted[k + rpm][1] - admitted[k][0] > window, admitted
    # 3 s span < two windows: at most 2 * rpm; a token bucket admits rpm + 5/s * 2.9 s = 24.
    assert len(admitted) <= 2 * rpm


async def test_unlimited_never_touches_redis():
    dead = RedisRateLimiter.from_url(f"redis://127.0.0.1:{_closed_port()}/0")
    try:
        assert (await dead.check("k", rpm=0, tpm=0, tokens=5)).allowed
        await dead.consume_tokens("k", tpm=0, tokens=5)
    finally:
        await dead.aclose()


async def test_charging_after_the_answer_is_best_effort(caplog):
    limiter = RedisRateLimiter.from_url(f"redis://127.0.0.1:{_closed_port()}/0")
    try:
        with caplog.at_level(logging.WARNING, logger="wardgate.ratelimit.redis_limiter"):
            await limiter.consume_tokens("secret-key-id", tpm=10, tokens=7)
    finally:
        await limiter.aclose()
    assert "7 tokens were not charged" in caplog.text
    assert "secret-key-id" not in caplog.text


async def test_a_burst_larger_than_the_pool_waits_instead_of_failing(prefix):
    limiter = RedisRateLimiter.from_url(REDIS_URL, prefix=prefix, max_connections=4)
    try:
        decisions = await asyncio.gather(
            *(limiter.check("burst", rpm=100, tpm=0, tokens=0) for _ in range(300))
        )
    finally:
        await limiter.aclose()
    assert sum(d.allowed for d in decisions) == 100


async def test_unreachable_redis_fails_closed_and_fast():
    limiter = create_rate_limiter(f"redis://127.0.0.1:{_closed_port()}/0")
    assert isinstance(limiter, RedisRateLimiter)
    started = time.monotonic()
    try:
        with pytest.raises(Overloaded) as info:
            await limiter.check("k", rpm=10, tpm=0, tokens=0)
        assert info.value.code == "rate_limiter_unavailable"
        assert info.value.status == 503
        assert info.value.headers["retry-after"] == "1"
    finally:
        await limiter.aclose()
    assert time.monotonic() - started < 3.0


async def test_same_answers_as_the_local_limiter(limiter):
    """The Lua script and the Python reference agree on a mixed sequence (same instant)."""
    local = LocalRateLimiter()
    steps = [(3, 100, 40), (3, 100, 40), (3, 100, 40), (3, 100, 0), (3, 100, 10)]
    for rpm, tpm, tokens in steps:
        a = await local.check("k", rpm, tpm, tokens)
        b = await limiter.check("k", rpm, tpm, tokens)
        assert a.allowed == b.allowed
        assert a.refused_by == b.refused_by
        assert a.requests.remaining == b.requests.remaining
        assert a.tokens.remaining == b.tokens.remaining


_WORKER = """
import asyncio, json, sys, time
from wardgate.ratelimit import RedisRateLimiter

async def main(url, prefix, rpm, window_s):
    limiter = RedisRateLimiter.from_url(url, prefix=prefix)
    await limiter.check("warmup", rpm=1000, tpm=0, tokens=0)  # connect before the start line
    print("ready", flush=True)
    sys.stdin.readline()
    allowed = attempts = 0
    first = time.time()
    while time.time() - first < window_s:
        decision = await limiter.check("shared", rpm=rpm, tpm=0, tokens=0)
        allowed += decision.allowed
        attempts += 1
    last = time.time()
    await limiter.aclose()
    print(json.dumps({"allowed": allowed, "attempts": attempts, "first": first, "last": last}))

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
"""


def test_two_processes_share_one_limit_exactly(prefix):
    rpm, window_s = 40, 1.0
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, REDIS_URL, prefix, str(rpm), str(window_s)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    try:
        for worker in workers:
            assert worker.stdout.readline().strip() == "ready"
        for worker in workers:  # start both at once
            worker.stdin.write("go\n")
            worker.stdin.flush()
        results = [json.loads(worker.communicate(timeout=30)[0]) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    assert all(worker.returncode == 0 for worker in workers)
    total = sum(r["allowed"] for r in results)
    span = max(r["last"] for r in results) - min(r["first"] for r in results)
    # Both processes kept asking well past the limit, so the limit, not the load, decided.
    assert all(r["attempts"] > rpm for r in results)
    # A sliding window: the limit and not one more, however the two processes interleave.
    assert total == rpm, (total, span, results)


def _closed_port() -> int:
    """A port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
