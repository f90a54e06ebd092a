"""The llamacpp backend against the real embedded SmolLM2 model."""

from __future__ import annotations

import asyncio

import pytest

from wardgate.backends.llamacpp import LlamaCppBackend
from wardgate.chat import ChatRequest, Completion
from wardgate.config import ModelConfig
from wardgate.errors import ContextLengthExceeded, InvalidRequest, Overloaded
from wardgate.routing.circuit import CircuitState
from wardgate.routing.failover import Failover


def _request(text: str, **kwargs: object) -> ChatRequest:
    return ChatRequest.model_validate(
        {"model": "smol", "messages": [{"role": "user", "content": text}], **kwargs}
    )


@pytest.fixture
async def backend():
    # A long queue wait: on a loaded machine a 48-token answer can take longer than the
    # default 10 s, and these tests are about admission, not the wait bound.
    config = ModelConfig(
        name="smol", n_ctx=512, queue_size=1, max_output_tokens=64, queue_wait_s=600
    )
    b = LlamaCppBackend(config)
    await b.start()
    yield b
    await b.aclose()


async def test_complete_and_stream_agree_at_temperature_zero(backend: LlamaCppBackend) -> None:
    request = _request("Name three colours.", max_tokens=16, temperature=0)
    whole = await backend.complete(request)
    assert whole.text.strip()
    assert whole.usage.prompt_tokens > 10
    assert 0 < whole.usage.completion_tokens <= 16
    deltas = [d async for d in backend.stream(request)]
    assert "".join(d.text for d in deltas) == whole.text
    assert deltas[-1].finish_reason == whole.finish_reason
    assert deltas[-1].usage == whole.usage
    assert sum(1 for d in deltas if d.text) > 3  # really streamed, not one blob


async def test_max_tokens_gives_length_finish(backend: LlamaCppBackend) -> None:
    result = await backend.complete(
        _request("Count from one to one hundred.", max_tokens=5, temperature=0)
    )
    assert result.finish_reason == "length"
    assert result.usage.completion_tokens <= 6


async def test_stop_sequence_cuts_output(backend: LlamaCppBackend) -> None:
    free = await backend.complete(_request("Count from 1 to 10.", max_tokens=30, temperature=0))
    assert "\n" in free.text
    stopped = await backend.complete(
        _request("Count from 1 to 10.", max_tokens=30, temperature=0, stop=["\n"])
    )
    assert "\n" not in stopped.text
    assert stopped.finish_reason == "stop"
    assert len(stopped.text) < len(free.text)


async def test_prompt_longer_than_context_is_a_client_error(backend: LlamaCppBackend) -> None:
    with pytest.raises(ContextLengthExceeded) as info:
        await backend.complete(_request("word " * 2000, max_tokens=5))
    assert info.value.status == 400
    assert "512" in info.value.message


async def test_absurd_max_tokens_rejected(backend: LlamaCppBackend) -> None:
    with pytest.raises(InvalidRequest) as info:
        await backend.complete(_request("hi", max_tokens=100_000))
    assert info.value.code == "max_tokens_too_large"


async def test_full_queue_answers_overloaded_without_hanging(backend: LlamaCppBackend) -> None:
    # queue_size=1: one running + one waiting are admitted, the third is refused at once.
    slow = [
        asyncio.create_task(backend.complete(_request("Tell me a story.", max_tokens=48)))
        for _ in range(2)
    ]
    await asyncio.sleep(0.05)
    with pytest.raises(Overloaded) as info:
        await asyncio.wait_for(backend.complete(_request("hi", max_tokens=4)), timeout=1)
    assert int(info.value.headers["Retry-After"]) >= 1
    assert info.value.status == 503
    done = await asyncio.gather(*slow)
    assert all(r.text for r in done)
    assert backend.queue_depth() == 0


async def test_abandoned_stream_stops_generation(backend: LlamaCppBackend) -> None:
    stream = backend.stream(
        _request("Write a long essay about the ocean.", max_tokens=64, temperature=0)
    )
    first = await anext(stream)
    assert first.text
    await stream.aclose()
    # The worker noticed the cancellation: a new request is served promptly.
    result = await asyncio.wait_for(backend.complete(_request("hi", max_tokens=4)), timeout=30)
    assert result.usage.completion_tokens >= 1


async def test_busy_real_model_answers_overloaded_and_keeps_its_breaker_closed() -> None:
    # Finding 11 on the real weights: 24 concurrent requests at queue_size 16. Seven are
    # refused at admission; of the 17 queued, whoever has not started within queue_wait_s
    # gets a 503 overloaded; none is a failure of the model (tests/backends/
    # test_llamacpp_queue.py has the timing-controlled version of this).
    config = ModelConfig(name="smol", n_ctx=512, queue_size=16, queue_wait_s=1.0, timeout_s=30)
    backend = LlamaCppBackend(config)
    await backend.start()
    try:
        failover = Failover({"smol": backend}, {"smol": config})

        async def one() -> object:
            try:
                completion, _ = await failover.complete("smol", _request("Hi.", max_tokens=4))
                return completion
            except Exception as exc:  # the outcome under test
                return exc

        outcomes = await asyncio.wait_for(asyncio.gather(*(one() for _ in range(24))), 60)
        busy = [o for o in outcomes if isinstance(o, Overloaded)]
        served = [o for o in outcomes if isinstance(o, Completion)]
        assert len(busy) + len(served) == 24, [o for o in outcomes if o not in busy + served]
        assert len(busy) >= 7 and served
        assert all(int(o.headers["Retry-After"]) >= 1 for o in busy)
        breaker = failover.breaker("smol")
        assert breaker.state is CircuitState.CLOSED and breaker.consecutive_failures == 0
        assert backend.queue_depth() == 0
    finally:
        await backend.aclose()
