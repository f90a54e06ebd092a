"""Failover with scripted backends that follow the real Backend protocol."""

from __future__ import annotations

import asyncio
import importlib
import random
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from wardgate.backends.base import Backend
from wardgate.backends.openai_compat import OpenAICompatBackend
from wardgate.chat import ChatMessage, ChatRequest, Completion, Delta, Usage
from wardgate.config import GatewayConfig, ModelConfig
from wardgate.errors import (
    CircuitOpen,
    ContextLengthExceeded,
    ModelNotFound,
    Overloaded,
    RoutingRefused,
    UpstreamError,
    UpstreamTimeout,
)
from wardgate.routing.failover import (
    DETAIL_MID_STREAM,
    DETAIL_RETRY_AFTER_TOO_LONG,
    SKIP_ROUTING,
    SKIP_VENDOR_FALLBACK,
    Failover,
    RouteTrace,
)

REQUEST = ChatRequest(model="primary", messages=[ChatMessage(role="user", content="hello")])


def unavailable(retry_after: float | None = None) -> UpstreamError:
    return UpstreamError("503 from upstream", upstream_status=503, retry_after=retry_after)


def rejected() -> UpstreamError:
    return UpstreamError("400 from upstream", retryable=False, upstream_status=400)


@dataclass
class Hang:
    seconds: float


@dataclass
class ChunksThen:
    """Stream ``chunks`` text deltas, then raise ``error`` (or hang / end without finishing)."""

    chunks: int
    error: BaseException | Hang | None = None


OK = "ok"
EMPTY = "empty"


class ScriptedBackend:
    """Answers per a script, one step per call; the last step repeats."""

    def __init__(self, config: ModelConfig, script: list[object]) -> None:
        self.config = config
        self.script = script
        self.calls = 0
        self.closed_streams = 0
        self.requests: list[ChatRequest] = []

    async def start(self) -> None:
        return None

    def _step(self, request: ChatRequest) -> object:
        self.requests.append(request)
        step = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        return step

    async def complete(self, request: ChatRequest) -> Completion:
        step = self._step(request)
        await asyncio.sleep(0)
        if isinstance(step, BaseException):
            raise step
        if isinstance(step, Hang):
            await asyncio.sleep(step.seconds)
        return Completion(text=f"from {self.config.name}", usage=Usage(3, 2))

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        step = self._step(request)
        try:
            await asyncio.sleep(0)
            if isinstance(step, BaseException):
                raise step
            if isinstance(step, Hang):
                await asyncio.sleep(step.seconds)
            if step == EMPTY:
                return
            if isinstance(step, ChunksThen):
                for i in range(step.chunks):
                    yield Delta(text=f"{self.config.name}-{i} ")
                if isinstance(step.error, BaseException):
                    raise step.error
                if isinstance(step.error, Hang):
                    await asyncio.sleep(step.error.seconds)
                return  # no finish_reason: a truncated stream
            yield Delta(text=f"from {self.config.name}")
            yield Delta(finish_reason="stop", usage=Usage(3, 2))
        finally:
            self.closed_streams += 1

    async def aclose(self) -> None:
        return None

    def queue_depth(self) -> int:
        return 0


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def model(name: str, **fields: object) -> ModelConfig:
    fields.setdefault("retries", 0)
    fields.setdefault("backoff_s", 0.2)
    return ModelConfig(name=name, **fields)


def vendor(name: str, **fields: object) -> ModelConfig:
    fields.setdefault("base_url", "https://vendor.invalid/v1")
    return model(name, backend="openai", tags={"deployment": "vendor", "weights": "closed"},
                 **fields)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def build(clock: FakeClock, *pairs: tuple[ModelConfig, list[object]], **kwargs):
    configs = {config.name: config for config, _ in pairs}
    GatewayConfig(models=list(configs.values()))  # the fixtures must be a valid config
    backends = {config.name: ScriptedBackend(config, script) for config, script in pairs}
    for backend in backends.values():
        assert isinstance(backend, Backend)
    failover = Failover(backends, configs, clock=clock, rng=random.Random(7), **kwargs)
    return failover, backends


def outcomes(trace: RouteTrace) -> list[tuple[str, str, str | None]]:
    return [(a.model, a.outcome, a.error_code or a.detail) for a in trace.attempts]


# -- complete -----------------------------------------------------------------------------


async def test_healthy_primary_serves_without_retries(clock):
    failover, backends = build(clock, (model("primary", fallbacks=["spare"]), [OK]),
                               (model("spare"), [OK]))
    completion, trace = await failover.complete("primary", REQUEST)
    assert completion.text == "from primary"
    assert trace.served_by == "primary"
    assert outcomes(trace) == [("primary", "ok", None)]
    assert backends["spare"].calls == 0
    assert clock.sleeps == []


async def test_retryable_errors_back_off_exponentially_with_jitter(clock):
    failover, backends = build(
        clock, (model("primary", retries=3, backoff_s=0.2), [unavailable(), unavailable(),
                                                             unavailable(), OK]))
    completion, trace = await failover.complete("primary", REQUEST)
    assert completion.text == "from primary"
    assert backends["primary"].calls == 4
    assert len(clock.sleeps) == 3
    for n, slept in enumerate(clock.sleeps):
        base = 0.2 * 2**n
        assert base / 2 <= slept <= base, (n, slept)
    assert len(set(clock.sleeps)) == 3
    assert [a.outcome for a in trace.attempts] == ["error", "error", "error", "ok"]
    assert trace.attempts[0].upstream_status == 503


async def test_upstream_retry_after_is_honoured(clock):
    failover, _ = build(clock, (model("primary", retries=1, backoff_s=0.1),
                                [unavailable(retry_after=2.5), OK]))
    completion, _ = await failover.complete("primary", REQUEST)
    assert completion.text == "from primary"
    assert clock.sleeps == [2.5]


async def test_retry_after_longer_than_max_wait_moves_to_fallback_at_once(clock):
    failover, backends = build(
        clock,
        (model("primary", retries=3, fallbacks=["spare"]), [unavailable(retry_after=120), OK]),
        (model("spare"), [OK]),
        max_retry_wait_s=10,
    )
    completion, trace = await failover.complete("primary", REQUEST)
    assert completion.text == "from spare"
    assert backends["primary"].calls == 1
    assert clock.sleeps == []
    assert outcomes(trace) == [("primary", "error", "upstream_error"), ("spare", "ok", None)]
    assert trace.attempts[0].detail == DETAIL_RETRY_AFTER_TOO_LONG


async def test_fallbacks_in_order_after_retries_are_used_up(clock):
    failover, backends = build(
        clock,
        (model("primary", retries=1, fallbacks=["first", "second"]), [unavailable()]),
        (model("first", retries=2), [UpstreamError("connection refused")]),
        (model("second"), [OK]),
    )
    completion, trace = await failover.complete("primary", REQUEST)
    assert completion.text == "from second"
    assert trace.served_by == "second"
    assert [a.model for a in trace.attempts] == ["primary"] * 2 + ["first"] * 3 + ["second"]
    # Backoff between retries of one model only, never before moving to a fallback.
    assert len(clock.sleeps) == 1 + 2
    assert backends["second"].calls == 1


async def test_non_retryable_upstream_error_is_neither_retried_nor_failed_over(clock):
    failover, backends = build(clock, (model("primary", retries=3, fallbacks=["spare"]),
                                       [rejected()]), (model("spare"), [OK]))
    trace = RouteTrace("primary")
    with pytest.raises(UpstreamError) as info:
        await failover.complete("primary", REQUEST, trace=trace)
    assert info.value.upstream_status == 400
    assert backends["primary"].calls == 1
    assert backends["spare"].calls == 0
    assert outcomes(trace) == [("primary", "error", "upstream_error")]
    assert failover.breaker("primary").consecutive_failures == 0


async def test_the_requests_own_fault_is_raised_unchanged(clock):
    failover, backends = build(
        clock, (model("primary", retries=3, fallbacks=["spare"]),
                [ContextLengthExceeded("prompt too long")]), (model("spare"), [OK]))
    trace = RouteTrace("primary")
    with pytest.raises(ContextLengthExceeded):
        await failover.complete("primary", REQUEST, trace=trace)
    assert backends["spare"].calls == 0
    assert outcomes(trace) == [("primary", "error", "context_length_exceeded")]


async def test_on_prem_never_falls_back_to_vendor_by_default(clock):
    failover, backends = build(
        clock,
        (model("primary", fallbacks=["cloud", "local-spare"]), [unavailable()]),
        (vendor("cloud"), [OK]),
        (model("local-spare"), [unavailable()]),
    )
    trace = RouteTrace("primary")
    with pytest.raises(UpstreamError):
        await failover.complete("primary", REQUEST, trace=trace)
    assert backends["cloud"].calls == 0
    assert outcomes(trace) == [
        ("cloud", "skipped", SKIP_VENDOR_FALLBACK),
        ("primary", "error", "upstream_error"),
        ("local-spare", "error", "upstream_error"),
    ]


async def test_vendor_fallback_when_explicitly_allowed(clock):
    failover, _ = build(
        clock,
        (model("primary", fallbacks=["cloud"], allow_vendor_fallback=True), [unavailable()]),
        (vendor("cloud"), [OK]),
    )
    completion, trace = await failover.complete("primary", REQUEST)
    assert completion.text == "from cloud"
    assert trace.served_by == "cloud"


async def test_vendor_models_may_fall_back_anywhere(clock):
    failover, _ = build(
        clock,
        (vendor("cloud", fallbacks=["cloud-2", "local"]), [unavailable()]),
        (vendor("cloud-2"), [unavailable()]),
        (model("local"), [OK]),
    )
    completion, trace = await failover.complete("cloud", REQUEST)
    assert completion.text == "from local"
    assert [a.model for a in trace.attempts] == ["cloud", "cloud-2", "local"]


async def test_routing_predicate_narrows_the_plan(clock):
    failover, backends = build(
        clock,
        (model("primary", fallbacks=["spare"]), [unavailable()]),
        (model("spare"), [OK]),
    )
    trace = RouteTrace("primary")
    with pytest.raises(UpstreamError):
        await failover.complete("primary", REQUEST, trace=trace, allowed=lambda n: n != "spare")
    assert backends["spare"].calls == 0
    assert ("spare", "skipped", SKIP_ROUTING) in outcomes(trace)


async def test_nothing_allowed_is_a_routing_refusal(clock):
    failover, _ = build(clock, (model("primary"), [OK]))
    with pytest.raises(RoutingRefused):
        await failover.complete("primary", REQUEST, allowed=lambda n: False)


async def test_unknown_model(clock):
    failover, _ = build(clock, (model("primary"), [OK]))
    with pytest.raises(ModelNotFound):
        await failover.complete("nope", REQUEST)


async def test_timeout_is_a_retryable_failure(clock):
    failover, _ = build(
        clock,
        (model("primary", timeout_s=0.05, fallbacks=["spare"]), [Hang(5)]),
        (model("spare"), [OK]),
    )
    completion, trace = await failover.complete("primary", REQUEST)
    assert completion.text == "from spare"
    assert outcomes(trace)[0] == ("primary", "error", "upstream_timeout")


async def test_circuit_opens_skips_the_dead_backend_then_probes_it(clock):
    failover, backends = build(
        clock,
        (model("primary", fallbacks=["spare"],
               circuit_breaker={"failure_threshold": 2, "reset_after_s": 30}),
         [unavailable(), unavailable(), OK]),
        (model("spare"), [OK]),
    )
    for _ in range(2):
        completion, _ = await failover.complete("primary", REQUEST)
        assert completion.text == "from spare"
    assert failover.circuit_states() == {"primary": "open", "spare": "closed"}

    completion, trace = await failover.complete("primary", REQUEST)
    assert completion.text == "from spare"
    assert backends["primary"].calls == 2  # not called while open
    assert outcomes(trace) == [("primary", "circuit_open", "circuit_open"), ("spare", "ok", None)]

    clock.now += 30
    assert failover.circuit_states()["primary"] == "half_open"
    completion, _ = await failover.complete("primary", REQUEST)
    assert completion.text == "from primary"  # the trial succeeded
    assert failover.circuit_states()["primary"] == "closed"


async def test_all_circuits_open_raises_circuit_open_with_retry_after(clock):
    failover, _ = build(
        clock,
        (model("primary", circuit_breaker={"failure_threshold": 1, "reset_after_s": 20}),
         [unavailable()]),
    )
    with pytest.raises(UpstreamError):
        await failover.complete("primary", REQUEST)
    clock.now += 5
    with pytest.raises(CircuitOpen) as info:
        await failover.complete("primary", REQUEST)
    assert info.value.status == 503
    assert info.value.retry_after == pytest.approx(15)
    assert info.value.headers["retry-after"] == "15"


async def test_real_failure_is_reported_over_a_fallbacks_open_circuit(clock):
    failover, _ = build(
        clock,
        (model("primary", fallbacks=["spare"]), [unavailable()]),
        (model("spare", circuit_breaker={"failure_threshold": 1, "reset_after_s": 60}),
         [unavailable()]),
    )
    with pytest.raises(UpstreamError):
        await failover.complete("spare", REQUEST)  # opens spare's circuit
    with pytest.raises(UpstreamError) as info:
        await failover.complete("primary", REQUEST)
    assert not isinstance(info.value, CircuitOpen)
    assert info.value.upstream_status == 503


async def test_half_open_admits_one_trial_while_others_fail_over(clock):
    failover, backends = build(
        clock,
        (model("primary", fallbacks=["spare"],
               circuit_breaker={"failure_threshold": 1, "reset_after_s": 10}),
         [unavailable(), Hang(0.05)]),
        (model("spare"), [OK]),
    )
    await failover.complete("primary", REQUEST)
    clock.now += 10
    results = await asyncio.gather(*(failover.complete("primary", REQUEST) for _ in range(5)))
    served = sorted(trace.served_by for _, trace in results)
    assert served == ["primary"] + ["spare"] * 4
    assert backends["primary"].calls == 2


async def test_cancelled_trial_does_not_wedge_the_breaker(clock):
    failover, backends = build(
        clock,
        (model("primary", circuit_breaker={"failure_threshold": 1, "reset_after_s": 10}),
         [unavailable(), Hang(5), OK]),
    )
    with pytest.raises(UpstreamError):
        await failover.complete("primary", REQUEST)
    clock.now += 10
    trace = RouteTrace("primary")
    task = asyncio.create_task(failover.complete("primary", REQUEST, trace=trace))
    while backends["primary"].calls < 2:
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert outcomes(trace) == [("primary", "error", "cancelled")]
    completion, _ = await failover.complete("primary", REQUEST)
    assert completion.text == "from primary"


async def test_trace_serialises_for_the_audit_log(clock):
    failover, _ = build(clock, (model("primary", fallbacks=["spare"]), [unavailable()]),
                        (model("spare"), [OK]))
    _, trace = await failover.complete("primary", REQUEST)
    assert trace.as_list() == [
        {"model": "primary", "outcome": "error", "error_code": "upstream_error",
         "latency_s": 0.0, "upstream_status": 503, "detail": None},
        {"model": "spare", "outcome": "ok", "error_code": None, "latency_s": 0.0,
         "upstream_status": None, "detail": None},
    ]


# -- stream -------------------------------------------------------------------------------


async def collect(stream) -> list[Delta]:
    return [delta async for delta in stream]


async def test_stream_retries_before_the_first_chunk(clock):
    failover, backends = build(clock, (model("primary", retries=1), [unavailable(), OK]))
    stream = failover.stream("primary", REQUEST)
    deltas = await collect(stream)
    assert [d.text for d in deltas] == ["from primary", ""]
    assert deltas[-1].finish_reason == "stop"
    assert stream.served_by == "primary"
    assert [a.outcome for a in stream.trace.attempts] == ["error", "ok"]
    assert backends["primary"].closed_streams == 2
    assert len(clock.sleeps) == 1


async def test_stream_fails_over_before_the_first_chunk(clock):
    failover, _ = build(
        clock,
        (model("primary", fallbacks=["spare"], timeout_s=0.05), [Hang(5)]),
        (model("spare"), [OK]),
    )
    stream = failover.stream("primary", REQUEST)
    deltas = await collect(stream)
    assert deltas[0].text == "from spare"
    assert stream.served_by == "spare"
    assert outcomes(stream.trace)[0] == ("primary", "error", "upstream_timeout")


async def test_empty_stream_counts_as_a_failure(clock):
    failover, _ = build(clock, (model("primary", fallbacks=["spare"]), [EMPTY]),
                        (model("spare"), [OK]))
    stream = failover.stream("primary", REQUEST)
    assert (await collect(stream))[0].text == "from spare"


async def test_failure_after_first_chunk_raises_and_never_switches_backend(clock):
    failover, backends = build(
        clock,
        (model("primary", retries=2, fallbacks=["spare"]), [ChunksThen(2, unavailable())]),
        (model("spare"), [OK]),
    )
    stream = failover.stream("primary", REQUEST)
    received = []
    with pytest.raises(UpstreamError):
        async for delta in stream:
            received.append(delta.text)
    assert received == ["primary-0 ", "primary-1 "]
    assert backends["primary"].calls == 1
    assert backends["spare"].calls == 0
    assert outcomes(stream.trace) == [("primary", "ok", None),
                                      ("primary", "error", "upstream_error")]
    assert stream.trace.attempts[-1].detail == DETAIL_MID_STREAM
    assert failover.breaker("primary").consecutive_failures == 1


async def test_stream_ending_without_finish_reason_is_an_error(clock):
    failover, _ = build(clock, (model("primary"), [ChunksThen(1)]))
    stream = failover.stream("primary", REQUEST)
    received = []
    with pytest.raises(UpstreamError) as info:
        async for delta in stream:
            received.append(delta.text)
    assert received == ["primary-0 "]
    assert "finish_reason" in info.value.message


async def test_stalled_stream_times_out_between_chunks(clock):
    failover, _ = build(clock, (model("primary", timeout_s=0.05), [ChunksThen(1, Hang(5))]))
    stream = failover.stream("primary", REQUEST)
    with pytest.raises(UpstreamTimeout):
        await collect(stream)
    assert outcomes(stream.trace)[-1] == ("primary", "error", "upstream_timeout")


async def test_stream_non_retryable_error_raises_before_any_chunk(clock):
    failover, backends = build(clock, (model("primary", retries=2, fallbacks=["spare"]),
                                       [rejected()]), (model("spare"), [OK]))
    with pytest.raises(UpstreamError) as info:
        await collect(failover.stream("primary", REQUEST))
    assert info.value.upstream_status == 400
    assert backends["spare"].calls == 0


async def test_stream_respects_vendor_rule_and_open_circuits(clock):
    failover, backends = build(
        clock,
        (model("primary", fallbacks=["cloud"],
               circuit_breaker={"failure_threshold": 1, "reset_after_s": 60}), [unavailable()]),
        (vendor("cloud"), [OK]),
    )
    with pytest.raises(UpstreamError):
        await collect(failover.stream("primary", REQUEST))
    stream = failover.stream("primary", REQUEST)
    with pytest.raises(CircuitOpen):
        await collect(stream)
    assert backends["cloud"].calls == 0
    assert outcomes(stream.trace) == [("cloud", "skipped", SKIP_VENDOR_FALLBACK),
                                      ("primary", "circuit_open", "circuit_open")]


async def test_closing_the_stream_early_closes_the_backend_stream(clock):
    failover, backends = build(clock, (model("primary"), [ChunksThen(100, unavailable())]))
    stream = failover.stream("primary", REQUEST)
    assert (await anext(stream)).text == "primary-0 "
    await stream.aclose()
    assert backends["primary"].closed_streams == 1
    assert failover.circuit_states()["primary"] == "closed"


class BatchingBackend(ScriptedBackend):
    """A backend that hands out its deltas grouped as they arrived (``stream_batches``)."""

    def __init__(self, config: ModelConfig, batches: list[list[Delta]],
                 then: BaseException | Hang | None = None) -> None:  # fmt: skip
        super().__init__(config, [OK])
        self.batches = batches
        self.then = then

    async def stream_batches(self, request: ChatRequest) -> AsyncIterator[list[Delta]]:
        self._step(request)
        try:
            for batch in self.batches:
                await asyncio.sleep(0)
                yield batch
            if isinstance(self.then, BaseException):
                raise self.then
            if isinstance(self.then, Hang):
                await asyncio.sleep(self.then.seconds)
        finally:
            self.closed_streams += 1


def batching(clock: FakeClock, config: ModelConfig, backend: BatchingBackend) -> Failover:
    return Failover({config.name: backend}, {config.name: config}, clock=clock)


BATCHES = [
    [Delta(text="a"), Delta(text="b"), Delta(text="c")],
    [],  # an empty batch is skipped, never handed on
    [Delta(text="d"), Delta(finish_reason="stop", usage=Usage(3, 4), stop_sequence="END")],
]


async def test_batches_pass_through_whole_and_in_order(clock):
    config = model("primary")
    backend = BatchingBackend(config, BATCHES)
    stream = batching(clock, config, backend).stream("primary", REQUEST)
    batches = []
    while True:
        try:
            batches.append(await stream.next_batch())
        except StopAsyncIteration:
            break
    assert [[d.text for d in b] for b in batches] == [["a", "b", "c"], ["d", ""]]
    last = batches[-1][-1]
    assert (last.finish_reason, last.stop_sequence, last.usage) == ("stop", "END", Usage(3, 4))
    assert stream.served_by == "primary"
    assert backend.closed_streams == 1


async def test_delta_by_delta_and_batch_by_batch_can_be_mixed(clock):
    config = model("primary")
    stream = batching(clock, config, BatchingBackend(config, BATCHES)).stream("primary", REQUEST)
    assert (await anext(stream)).text == "a"
    assert [d.text for d in await stream.next_batch()] == ["b", "c"]  # the rest of that read
    assert [d.text for d in await collect(stream)] == ["d", ""]


async def test_a_batched_stream_that_stalls_times_out_between_batches(clock):
    config = model("primary", timeout_s=0.05)
    backend = BatchingBackend(config, BATCHES[:1], then=Hang(5))
    stream = batching(clock, config, backend).stream("primary", REQUEST)
    received = []
    with pytest.raises(UpstreamTimeout):
        async for delta in stream:
            received.append(delta.text)
    assert received == ["a", "b", "c"]
    assert outcomes(stream.trace)[-1] == ("primary", "error", "upstream_timeout")
    assert stream.trace.attempts[-1].detail == DETAIL_MID_STREAM


async def test_a_batched_stream_without_finish_reason_is_an_error(clock):
    config = model("primary")
    stream = batching(clock, config, BatchingBackend(config, BATCHES[:1])).stream(
        "primary", REQUEST
    )
    with pytest.raises(UpstreamError) as info:
        await collect(stream)
    assert "finish_reason" in info.value.message


# -- candidates from the routing policy ---------------------------------------------------


async def test_policy_candidates_each_followed_by_their_fallbacks(clock):
    failover, _ = build(
        clock,
        (model("a", fallbacks=["a-spare"]), [unavailable()]),
        (model("a-spare"), [unavailable()]),
        (model("b"), [OK]),
    )
    completion, trace = await failover.complete(["a", "b"], REQUEST)
    assert completion.text == "from b"
    assert trace.requested == "a"
    assert [a.model for a in trace.attempts] == ["a", "a-spare", "b"]


async def test_a_vendor_candidate_chosen_by_the_policy_is_not_a_fallback(clock):
    failover, _ = build(
        clock,
        (model("local", fallbacks=["cloud"]), [unavailable()]),
        (vendor("cloud"), [OK]),
    )
    completion, trace = await failover.complete(["local", "cloud"], REQUEST)
    assert completion.text == "from cloud"
    assert outcomes(trace)[0] == ("cloud", "skipped", SKIP_VENDOR_FALLBACK)


async def test_routing_allow_set_overrides_allow_vendor_fallback(clock):
    """Sensitive data the policy pinned on-prem must not leak through a config fallback."""
    failover, backends = build(
        clock,
        (model("local", fallbacks=["cloud"], allow_vendor_fallback=True), [unavailable()]),
        (vendor("cloud"), [OK]),
    )
    trace = RouteTrace("local")
    with pytest.raises(UpstreamError):
        await failover.complete(["local"], REQUEST, allowed={"local"}, trace=trace)
    assert backends["cloud"].calls == 0
    assert ("cloud", "skipped", SKIP_ROUTING) in outcomes(trace)
    stream = failover.stream(["local"], REQUEST, allowed={"local"})
    with pytest.raises(UpstreamError):
        await collect(stream)
    assert backends["cloud"].calls == 0


async def test_unknown_candidates_are_skipped_and_an_empty_plan_refused(clock):
    failover, _ = build(clock, (model("a"), [OK]))
    completion, trace = await failover.complete(["gone", "a"], REQUEST)
    assert completion.text == "from a"
    assert outcomes(trace)[0] == ("gone", "skipped", "backend_unavailable")
    with pytest.raises(RoutingRefused):
        await failover.complete([], REQUEST)
    with pytest.raises(RoutingRefused):
        await collect(failover.stream(["gone"], REQUEST))


# -- what each kind of failure means --------------------------------------------------------


async def test_busy_backend_is_skipped_without_retry_or_breaker_count(clock):
    busy = Overloaded("model 'primary' is busy", headers={"Retry-After": "3"})
    failover, backends = build(clock, (model("primary", retries=3, fallbacks=["spare"]), [busy]),
                               (model("spare"), [OK]))
    completion, trace = await failover.complete("primary", REQUEST)
    assert completion.text == "from spare"
    assert backends["primary"].calls == 1
    assert clock.sleeps == []
    assert outcomes(trace) == [("primary", "error", "overloaded"), ("spare", "ok", None)]
    assert failover.breaker("primary").consecutive_failures == 0


async def test_busy_everywhere_keeps_the_503_and_its_retry_after(clock):
    busy = Overloaded("model 'primary' is busy", headers={"Retry-After": "3"})
    failover, _ = build(clock, (model("primary", retries=2), [busy]))
    with pytest.raises(Overloaded) as info:
        await failover.complete("primary", REQUEST)
    assert info.value.headers == {"Retry-After": "3"}
    with pytest.raises(Overloaded):
        await collect(failover.stream("primary", REQUEST))


async def test_rejected_credentials_fail_over_and_count_against_the_breaker(clock):
    auth = UpstreamError("bad vendor key", retryable=False, upstream_status=401,
                         code="upstream_auth_failed")
    failover, backends = build(
        clock,
        (vendor("cloud", retries=3, fallbacks=["cloud-2"]), [auth]),
        (vendor("cloud-2"), [OK]),
    )
    completion, trace = await failover.complete("cloud", REQUEST)
    assert completion.text == "from cloud-2"
    assert backends["cloud"].calls == 1  # not retried: the key will not get better
    assert outcomes(trace)[0] == ("cloud", "error", "upstream_auth_failed")
    assert failover.breaker("cloud").consecutive_failures == 1


async def test_local_model_crash_fails_over(clock):
    crash = UpstreamError("model 'primary' failed while generating", retryable=False)
    failover, backends = build(clock, (model("primary", retries=2, fallbacks=["spare"]), [crash]),
                               (model("spare"), [OK]))
    stream = failover.stream("primary", REQUEST)
    assert (await collect(stream))[0].text == "from spare"
    assert backends["primary"].calls == 1


async def test_each_model_can_get_its_own_version_of_the_request(clock):
    """E.g. vendors get the pseudonymised request, on-prem models the original."""
    masked = ChatRequest(model="primary", messages=[ChatMessage(role="user", content="<PERSON>")])
    failover, backends = build(
        clock,
        (model("local", fallbacks=["cloud"], allow_vendor_fallback=True), [unavailable()]),
        (vendor("cloud"), [OK]),
    )
    asked: list[str] = []

    def request_for(name: str) -> ChatRequest:
        asked.append(name)
        return masked if name == "cloud" else REQUEST

    _, trace = await failover.complete("local", request_for)
    assert trace.served_by == "cloud"
    assert asked == ["local", "cloud"]
    assert backends["local"].requests == [REQUEST]
    assert backends["cloud"].requests == [masked]
    stream = failover.stream("local", request_for)
    await collect(stream)
    assert backends["cloud"].requests[-1] is masked
    assert backends["local"].requests[-1] is REQUEST


# -- against real HTTP: the OpenAI-compatible backend and a fake vendor server ---------------

_KEY_ENV = "WARDGATE_TEST_FAILOVER_KEY"


def _fakes():
    """``tests.fakes`` (real vendor-protocol servers); importing it needs the repository root."""
    root = str(Path(__file__).resolve().parents[2])
    if root not in sys.path:
        sys.path.insert(0, root)
    return importlib.import_module("tests.fakes")


@pytest.fixture(scope="module")
def vendors() -> Iterator[dict[str, tuple[object, str]]]:
    fakes = _fakes()
    first = fakes.FakeOpenAI(api_key="sk-failover-test")
    second = fakes.FakeOpenAI(api_key="sk-failover-test")
    with fakes.run_server(first.app) as first_url, fakes.run_server(second.app) as second_url:
        yield {"primary": (first, first_url), "spare": (second, second_url)}


@pytest.fixture
async def http_failover(vendors, clock, monkeypatch):
    monkeypatch.setenv(_KEY_ENV, "sk-failover-test")
    for fake, _ in vendors.values():
        fake.requests.clear()
        fake.faults.clear()
    configs = {
        name: vendor(name, base_url=f"{url}/v1", api_key_env=_KEY_ENV, retries=2,
                     backoff_s=0.05, timeout_s=5, fallbacks=["spare"] if name == "primary" else [])
        for name, (_, url) in vendors.items()
    }
    backends = {name: OpenAICompatBackend(config) for name, config in configs.items()}
    for backend in backends.values():
        await backend.start()
    yield Failover(backends, configs, clock=clock, rng=random.Random(3))
    for backend in backends.values():
        await backend.aclose()
    for fake, _ in vendors.values():
        fake.faults.clear()


HTTP_REQUEST = ChatRequest(model="primary", messages=[ChatMessage(role="user", content="one two")])


async def test_http_5xx_and_429_are_retried_honouring_retry_after(http_failover, vendors, clock):
    primary = vendors["primary"][0]
    primary.faults.push("status=503", "status=429,retry_after=2")
    completion, trace = await http_failover.complete("primary", HTTP_REQUEST)
    assert completion.text == "Echo: one two"
    assert trace.served_by == "primary"
    assert [a.upstream_status for a in trace.attempts] == [503, 429, None]
    assert len(primary.requests) == 3
    assert clock.sleeps[1] == 2.0
    assert vendors["spare"][0].requests == []


async def test_http_rejected_key_fails_over_without_retry(http_failover, vendors):
    vendors["primary"][0].faults.push("status=401")
    _, trace = await http_failover.complete("primary", HTTP_REQUEST)
    assert trace.served_by == "spare"
    assert len(vendors["primary"][0].requests) == 1
    assert outcomes(trace)[0] == ("primary", "error", "upstream_auth_failed")


async def test_http_bad_request_is_not_sent_elsewhere(http_failover, vendors):
    vendors["primary"][0].faults.push("status=400")
    with pytest.raises(UpstreamError) as info:
        await http_failover.complete("primary", HTTP_REQUEST)
    assert info.value.upstream_status == 400
    assert vendors["spare"][0].requests == []


async def test_http_stream_connection_lost_before_headers_fails_over(http_failover, vendors):
    vendors["primary"][0].faults.push("drop=headers", "drop=headers", "drop=headers")
    stream = http_failover.stream("primary", HTTP_REQUEST)
    deltas = await collect(stream)
    assert "".join(d.text for d in deltas) == "Echo: one two"
    assert deltas[-1].finish_reason == "stop"
    assert stream.served_by == "spare"
    assert len(vendors["primary"][0].requests) == 3


async def test_http_stream_cut_mid_body_raises_after_the_chunks_it_sent(http_failover, vendors):
    vendors["primary"][0].faults.push("drop=mid,after=2")
    stream = http_failover.stream("primary", HTTP_REQUEST)
    received = []
    with pytest.raises(UpstreamError):
        async for delta in stream:
            received.append(delta.text)
    assert "".join(received).startswith("Echo:")
    assert "".join(received) != "Echo: one two"
    assert vendors["spare"][0].requests == []
    assert len(vendors["primary"][0].requests) == 1
    assert stream.trace.attempts[-1].detail == DETAIL_MID_STREAM
