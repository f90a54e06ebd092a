"""A busy local model is healthy: its queue answers 503 + Retry-After, never its breaker.

Finding 11 of the outside review: 24 concurrent requests at the default ``queue_size`` 16
gave 7 immediate ``overloaded`` (right), 12 answers, and 5 requests that waited ~60 s and
then got "circuit breaker is open": the time they spent queued ran down ``timeout_s``, each
timeout counted as a failure of the model, and five of them opened its breaker.

These tests run the real llamacpp backend (worker thread, admission count, turn queue,
deadlines) with a model that sleeps per token (``tests/fakes/llama.py``), so the queue is
busy for a known time whatever else the machine is doing; the bounds they assert leave
seconds of slack. ``tests/backends/test_llamacpp.py`` repeats the 24-request case on the real
SmolLM2 weights.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.fakes.llama import slow_llama

from wardgate.backends.llamacpp import LlamaCppBackend
from wardgate.chat import ChatRequest, Completion
from wardgate.config import ModelConfig
from wardgate.errors import Overloaded, UpstreamTimeout
from wardgate.routing.circuit import CircuitState
from wardgate.routing.failover import Failover


def _request(stream: bool = False, **fields: Any) -> ChatRequest:
    return ChatRequest.model_validate(
        {
            "model": "local",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": stream,
            **fields,
        }
    )


async def _started(monkeypatch: pytest.MonkeyPatch, llama: type, **fields: Any) -> LlamaCppBackend:
    monkeypatch.setattr("llama_cpp.Llama", llama)
    backend = LlamaCppBackend(ModelConfig(name="local", **fields))
    await backend.start()
    return backend


@pytest.fixture
async def make_backend(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    made: list[LlamaCppBackend] = []

    async def make(llama: type, **fields: Any) -> LlamaCppBackend:
        backend = await _started(monkeypatch, llama, **fields)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        await backend.aclose()


async def _one(failover: Failover, stream: bool) -> tuple[object, float]:
    """Outcome (a Completion, the text of a stream, or the error) and seconds taken."""
    started = time.monotonic()
    try:
        if stream:
            parts = [d.text async for d in failover.stream("local", _request(stream=True))]
            outcome: object = "".join(parts)
        else:
            outcome, _trace = await failover.complete("local", _request())
    except Exception as exc:  # the outcome under test, whatever it is
        outcome = exc
    return outcome, time.monotonic() - started


async def test_24_concurrent_requests_at_queue_size_16_never_trip_the_breaker(
    make_backend: Any,
) -> None:
    # 0.5 s per answer, one at a time: 17 admitted would need 8.5 s, longer than timeout_s.
    # Before the fix, the queued ones timed out at 5 s, counted as failures, opened the
    # breaker, and the rest got circuit_open; now whoever cannot start within 1 s gets a
    # 503 overloaded with a Retry-After at once, and the breaker never hears of it.
    config: dict[str, Any] = {"queue_size": 16, "queue_wait_s": 1.0, "timeout_s": 5.0}
    backend = await make_backend(slow_llama(seconds_per_token=0.05, tokens=10), **config)
    failover = Failover({"local": backend}, {"local": backend.config})
    results = await asyncio.gather(*(_one(failover, stream=i % 2 == 1) for i in range(24)))

    served = [o for o, _ in results if isinstance(o, Completion | str)]
    busy = [o for o, _ in results if isinstance(o, Overloaded)]
    others = [o for o, _ in results if not isinstance(o, Completion | str | Overloaded)]
    assert others == []
    assert len(busy) >= 24 - 17  # beyond one running + 16 waiting: refused at admission
    assert served, "the first request starts at once and must be served"
    assert all(s.text if isinstance(s, Completion) else s for s in served)
    for error in busy:
        assert error.status == 503 and error.code == "overloaded"
        assert int(error.headers["Retry-After"]) >= 1
    # No one waited for timeout_s: a turn is waited for 1 s, an answer takes 0.5 s.
    assert max(seconds for _, seconds in results) < config["timeout_s"]
    breaker = failover.breaker("local")
    assert breaker.state is CircuitState.CLOSED and breaker.consecutive_failures == 0
    assert backend.queue_depth() == 0
    outcome, _ = await _one(failover, stream=False)
    assert isinstance(outcome, Completion)


async def test_time_queued_never_counts_towards_timeout_s(make_backend: Any) -> None:
    # Four requests of 0.6 s each against timeout_s 1.5: the last waits ~1.8 s for its turn,
    # longer than timeout_s, and is still served, because its own generation took 0.6 s.
    llama = slow_llama(seconds_per_token=0.06, tokens=10)
    backend = await make_backend(llama, queue_wait_s=20.0, timeout_s=1.5, retries=0)
    failover = Failover({"local": backend}, {"local": backend.config})
    results = await asyncio.gather(*(_one(failover, stream=i == 3) for i in range(4)))
    assert [type(o) for o, _ in results] == [Completion, Completion, Completion, str]
    assert max(seconds for _, seconds in results) > 1.5  # the queue really was waited on
    assert failover.breaker("local").consecutive_failures == 0


async def test_a_request_that_cannot_start_in_time_is_refused_at_once(make_backend: Any) -> None:
    # Once the backend knows how long a request takes, a request with more work queued ahead
    # of it than queue_wait_s is refused at admission, not after waiting queue_wait_s.
    backend = await make_backend(slow_llama(seconds_per_token=0.1, tokens=10), queue_wait_s=1.5)
    await backend.complete(_request())  # one measured request: ~1 s each
    running = [asyncio.create_task(backend.complete(_request())) for _ in range(3)]
    await asyncio.sleep(0.1)
    started = time.monotonic()
    with pytest.raises(Overloaded) as info:
        await backend.complete(_request())
    assert time.monotonic() - started < 0.5  # answered without waiting for a turn
    assert int(info.value.headers["Retry-After"]) >= 2
    outcomes = await asyncio.gather(*running, return_exceptions=True)
    assert isinstance(outcomes[0], Completion)


async def test_an_overdue_answer_stops_and_frees_the_model(make_backend: Any) -> None:
    # 100 tokens at 0.1 s would hold the worker for 10 s; timeout_s 1 stops it on the worker
    # itself, so the next request does not wait behind an answer nobody will read.
    llama = slow_llama(seconds_per_token=0.1, tokens=100)
    backend = await make_backend(llama, timeout_s=1.0, queue_wait_s=30.0)
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout):
        await backend.complete(_request())
    assert time.monotonic() - started < 5
    started = time.monotonic()
    await backend.complete(_request(max_tokens=3))
    assert time.monotonic() - started < 5  # not the ~9 s the overdue answer had left


async def test_a_caller_that_gives_up_frees_the_model(make_backend: Any) -> None:
    backend = await make_backend(slow_llama(seconds_per_token=0.1, tokens=100))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(backend.complete(_request()), timeout=0.5)
    started = time.monotonic()
    await backend.complete(_request(max_tokens=3))
    assert time.monotonic() - started < 5
