"""The OpenAI-compatible backend against a real (fake) OpenAI server over HTTP."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from tests.backends._keys import KEY_ENV, VENDOR_KEY
from tests.fakes import FakeOpenAI

from wardgate.backends.base import Backend, create_backend
from wardgate.backends.openai_compat import OpenAICompatBackend
from wardgate.chat import ChatRequest, Delta
from wardgate.config import ModelConfig
from wardgate.errors import ConfigError, InvalidRequest, UpstreamError, UpstreamTimeout

pytestmark = pytest.mark.timeout(30)


def _config(base_url: str, **overrides: Any) -> ModelConfig:
    fields: dict[str, Any] = {
        "name": "gpt-local",
        "backend": "openai",
        "base_url": f"{base_url}/v1",
        "api_key_env": KEY_ENV,
        "upstream_model": "gpt-4o-mini",
        "max_output_tokens": 64,
        "timeout_s": 5.0,
        "connect_timeout_s": 2.0,
    }
    fields.update(overrides)
    return ModelConfig(**fields)


def _request(text: str = "hello there world", **fields: Any) -> ChatRequest:
    return ChatRequest.model_validate(
        {"model": "gpt-local", "messages": [{"role": "user", "content": text}], **fields}
    )


@pytest.fixture
async def backend(
    openai_fake: FakeOpenAI, openai_url: str, vendor_key: str
) -> AsyncIterator[OpenAICompatBackend]:
    b = OpenAICompatBackend(_config(openai_url))
    await b.start()
    yield b
    await b.aclose()


async def _collect(stream: AsyncIterator[Delta]) -> list[Delta]:
    return [d async for d in stream]


# -- happy paths ---------------------------------------------------------------------------


async def test_entry_point_builds_this_backend(openai_url: str) -> None:
    backend = create_backend(_config(openai_url))
    assert isinstance(backend, OpenAICompatBackend)
    assert isinstance(backend, Backend)


async def test_complete_returns_text_usage_and_forwards_the_request(
    backend: OpenAICompatBackend, openai_fake: FakeOpenAI
) -> None:
    request = ChatRequest.model_validate(
        {
            "model": "gpt-local",
            "messages": [
                {"role": "developer", "content": "be brief"},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "hello "},
                        {"type": "text", "text": "there world"},
                    ],
                },
            ],
            "temperature": 0.3,
            "top_p": 0.9,
            "seed": 7,
            "user": "u-42",
            "stop": "zzz",
        }
    )
    completion = await backend.complete(request)

    assert completion.text == "Echo: hello there world"
    assert completion.finish_reason == "stop"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (5, 4)
    [seen] = openai_fake.requests
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["authorization"] == f"Bearer {VENDOR_KEY}"
    assert seen.body == {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello there world"},
        ],
        "max_tokens": 64,
        "temperature": 0.3,
        "top_p": 0.9,
        "seed": 7,
        "stop": ["zzz"],
    }  # no "user": client ids stay home unless forward_user is set


async def test_max_tokens_truncates_with_finish_length(
    backend: OpenAICompatBackend, openai_fake: FakeOpenAI
) -> None:
    completion = await backend.complete(_request(max_tokens=2))
    assert completion.text == "Echo: hello "
    assert completion.finish_reason == "length"
    assert completion.usage.completion_tokens == 2
    assert openai_fake.bodies[0]["max_tokens"] == 2


async def test_stop_sequences_cut_the_answer(backend: OpenAICompatBackend) -> None:
    completion = await backend.complete(_request(stop=["world", "nope"]))
    assert completion.text == "Echo: hello there "
    assert completion.finish_reason == "stop"


async def test_content_filter_finish_reason_passes_through(
    backend: OpenAICompatBackend, openai_fake: FakeOpenAI
) -> None:
    openai_fake.faults.push("finish=content_filter", "finish=content_filter")
    assert (await backend.complete(_request())).finish_reason == "content_filter"
    deltas = await _collect(backend.stream(_request()))
    assert deltas[-1].finish_reason == "content_filter"


async def test_max_completion_tokens_param_option(
    openai_fake: FakeOpenAI, openai_url: str, vendor_key: str
) -> None:
    b = OpenAICompatBackend(
        _config(openai_url, options={"max_tokens_param": "max_completion_tokens"})
    )
    await b.start()
    try:
        await b.complete(_request(max_completion_tokens=3))
    finally:
        await b.aclose()
    assert openai_fake.bodies[0]["max_completion_tokens"] == 3
    assert "max_tokens" not in openai_fake.bodies[0]


async def test_max_tokens_above_model_limit_is_refused_before_any_call(
    backend: OpenAICompatBackend, openai_fake: FakeOpenAI
) -> None:
    with pytest.raises(InvalidRequest) as info:
        await backend.complete(_request(max_tokens=65))
    assert info.value.code == "max_tokens_too_large"
    assert openai_fake.requests == []


async def test_stream_yields_chunk_by_chunk_then_finish_and_usage(
    backend: OpenAICompatBackend, openai_fake: FakeOpenAI
) -> None:
    deltas = await _collect(backend.stream(_request()))

    assert [d.text for d in deltas[:-1]] == ["Echo: ", "hello ", "there ", "world"]
    assert all(d.finish_reason is None for d in deltas[:-1])
    last = deltas[-1]
    assert (last.text, last.finish_reason) == ("", "stop")
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (3, 4)
    body = openai_fake.bodies[0]
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


async def test_stream_length_finish(backend: OpenAICompatBackend) -> None:
    deltas = await _collect(backend.stream(_request(max_tokens=3)))
    assert "".join(d.text for d in deltas) == "Echo: hello there "
    assert deltas[-1].finish_reason == "length"


async def test_stream_is_passed_through_as_it_arrives(
    backend: OpenAICompatBackend, openai_fake: FakeOpenAI
) -> None:
    openai_fake.faults.push("chunk_delay=0.15")
    started = time.monotonic()
    arrivals: list[float] = []
    async for delta in backend.stream(_request()):
        if delta.text:
            arrivals.append(time.monotonic() - started)
    assert len(arrivals) == 4
    # Four chunks 0.15 s apart: the first must not wait for the last (no buffering).
    assert arrivals[-1] - arrivals[0] >= 0.3


async def test_queue_depth_counts_in_flight_requests(
    backend: OpenAICompatBackend, openai_fake: FakeOpenAI
) -> None:
    openai_fake.faults.push("delay=0.8")
    task = asyncio.create_task(backend.complete(_request()))
    for _ in range(100):
        if openai_fake.requests:
            break
        await asyncio.sleep(0.01)
    assert backend.queue_depth() == 1
    await task
    assert backend.queue_depth() == 0


async def test_abandoned_stream_releases_its_slot(
    backend: OpenAICompatBackend, openai_fake: FakeOpenAI
) -> None:
    # Chunks far apart, so the answer is still in flight after the first (a body that came
    # in one read would already be done: its deltas arrive together).
    openai_fake.faults.push("chunk_delay=1.0")
    stream = backend.stream(_request())
    first = await anext(stream)
    assert first.text == "Echo: "
    assert backend.queue_depth() == 1
    await stream.aclose()  # type: ignore[attr-defined]
    assert backend.queue_depth() == 0


async def test_no_key_configured_sends_no_authorization(
    openai_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A local vLLM/llama.cpp server without auth: a separate fake that requires no key.
    from tests.fakes import run_server

    fake = FakeOpenAI()
    with run_server(fake.app) as url:
        b = OpenAICompatBackend(_config(url, api_key_env=None))
        await b.start()
        try:
            assert (await b.complete(_request())).text == "Echo: hello there world"
        finally:
            await b.aclose()
    assert "authorization" not in fake.requests[0].headers


async def test_close_is_idempotent_and_closed_backend_refuses(
    backend: OpenAICompatBackend,
) -> None:
    await backend.aclose()
    await backend.aclose()
    with pytest.raises(UpstreamError) as info:
        await backend.complete(_request())
    assert info.value.code == "upstream_not_started"


# -- configuration -------------------------------------------------------------------------


async def test_missing_key_env_is_a_config_error_at_start(
    openai_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    b = OpenAICompatBackend(_config(openai_url))
    with pytest.raises(ConfigError) as info:
        await b.start()
    assert KEY_ENV in info.value.message


async def test_empty_key_env_is_a_config_error(
    openai_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "  ")
    with pytest.raises(ConfigError):
        await OpenAICompatBackend(_config(openai_url)).start()


def test_unknown_max_tokens_param_is_a_config_error(openai_url: str) -> None:
    with pytest.raises(ConfigError):
        OpenAICompatBackend(_config(openai_url, options={"max_tokens_param": "n_predict"}))


# -- errors --------------------------------------------------------------------------------

ERROR_CASES = [
    # spec, retryable, code, upstream_status
    ("status=429,retry_after=7", True, "upstream_rate_limited", 429),
    ("status=500", True, "upstream_unavailable", 500),
    ("status=502", True, "upstream_unavailable", 502),
    ("status=503", True, "upstream_unavailable", 503),
    ("status=400", False, "upstream_rejected_request", 400),
    ("status=404", False, "upstream_rejected_request", 404),
    ("status=422", False, "upstream_rejected_request", 422),
    ("status=401", False, "upstream_auth_failed", 401),
    ("status=403", False, "upstream_auth_failed", 403),
]


@pytest.mark.parametrize("mode", ["complete", "stream"])
@pytest.mark.parametrize(("spec", "retryable", "code", "status"), ERROR_CASES)
async def test_http_errors_map_to_typed_errors(
    backend: OpenAICompatBackend,
    openai_fake: FakeOpenAI,
    mode: str,
    spec: str,
    retryable: bool,
    code: str,
    status: int,
) -> None:
    openai_fake.faults.push(spec)
    with pytest.raises(UpstreamError) as info:
        if mode == "complete":
            await backend.complete(_request())
        else:
            await _collect(backend.stream(_request()))
    error = info.value
    assert type(error) is UpstreamError
    assert (error.retryable, error.code, error.upstream_status) == (retryable, code, status)
    assert error.status == 502
    assert backend.queue_depth() == 0
    if status == 429:
        assert error.retry_after == 7.0
        assert error.headers == {"Retry-After": "7"}
    if status in (400, 404, 422):
        assert f"HTTP {status}" in error.message  # the upstream's reason is kept, sanitised


async def test_429_without_retry_after(
    backend: OpenAICompatBackend, openai_fake: FakeOpenAI
) -> None:
    openai_fake.faults.push("status=429,retry_after=none")
    with pytest.raises(UpstreamError) as info:
        await backend.complete(_request())
    assert info.value.retryable and info.value.retry_after is None
    assert "Retry-After" not in info.value.headers


@pytest.mark.parametrize("mode", ["complete", "stream"])
async def test_slow_upstream_times_out(
    openai_fake: FakeOpenAI, openai_url: str, vendor_key: str, mode: str
) -> None:
    openai_fake.faults.push("delay=3")
    b = OpenAICompatBackend(_config(openai_url, timeout_s=0.3))
    await b.start()
    started = time.monotonic()
    try:
        with pytest.raises(UpstreamTimeout) as info:
            if mode == "complete":
                await b.complete(_request())
            else:
                await _collect(b.stream(_request()))
    finally:
        await b.aclose()
    assert time.monotonic() - started < 2.5  # the 0.3 s timeout, not the 3 s delay
    assert info.value.retryable and info.value.status == 504
    assert info.value.code == "upstream_timeout"


async def test_stalled_stream_times_out_between_chunks(
    openai_fake: FakeOpenAI, openai_url: str, vendor_key: str
) -> None:
    openai_fake.faults.push("chunk_delay=1.5")
    b = OpenAICompatBackend(_config(openai_url, timeout_s=0.3))
    await b.start()
    try:
        with pytest.raises(UpstreamTimeout):
            await _collect(b.stream(_request()))
    finally:
        await b.aclose()


@pytest.mark.parametrize("mode", ["complete", "stream"])
async def test_connection_dropped_before_headers_is_retryable(
    backend: OpenAICompatBackend, openai_fake: FakeOpenAI, mode: str
) -> None:
    openai_fake.faults.push("drop=headers")
    with pytest.raises(UpstreamError) as info:
        if mode == "complete":
            await backend.complete(_request())
        else:
            await _collect(backend.stream(_request()))
    assert info.value.retryable
    assert info.value.code == "upstream_connection_lost"


async def test_connection_dropped_mid_stream_raises_after_partial_output(
    backend: OpenAICompatBackend, openai_fake: FakeOpenAI
) -> None:
    openai_fake.faults.push("drop=mid,after=2")
    received: list[Delta] = []
    with pytest.raises(UpstreamError) as info:
        async for delta in backend.stream(_request()):
            received.append(delta)
    assert [d.text for d in received] == ["Echo: ", "hello "]
    assert all(d.finish_reason is None for d in received)
    assert info.value.retryable and info.value.code == "upstream_connection_lost"
    assert backend.queue_depth() == 0


async def test_clean_close_without_done_is_not_a_finish(
    backend: OpenAICompatBackend, openai_fake: FakeOpenAI
) -> None:
    openai_fake.faults.push("drop=clean,after=1")
    received: list[Delta] = []
    with pytest.raises(UpstreamError) as info:
        async for delta in backend.stream(_request()):
            received.append(delta)
    assert [d.text for d in received] == ["Echo: "]
    assert info.value.code == "upstream_connection_lost"


async def test_error_event_inside_the_stream_raises(
    backend: OpenAICompatBackend, openai_fake: FakeOpenAI
) -> None:
    openai_fake.faults.push("stream_error=server_error,after=1")
    with pytest.raises(UpstreamError) as info:
        await _collect(backend.stream(_request()))
    assert info.value.code == "upstream_stream_error"
    assert info.value.retryable


async def test_unreachable_upstream_is_retryable(vendor_key: str) -> None:
    from tests.fakes.server import free_socket

    sock = free_socket()  # bound but never listening: connections are refused
    port = sock.getsockname()[1]
    b = OpenAICompatBackend(_config(f"http://127.0.0.1:{port}"))
    await b.start()
    try:
        with pytest.raises(UpstreamError) as info:
            await b.complete(_request())
    finally:
        await b.aclose()
        sock.close()
    assert info.value.retryable and info.value.code == "upstream_unreachable"


# -- the vendor key stays secret -----------------------------------------------------------


async def test_key_never_appears_in_errors_or_logs(
    backend: OpenAICompatBackend, openai_fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[UpstreamError] = []
    for spec in (
        "status=400,echo_key=1",
        "status=500,echo_key=1",
        "status=429,echo_key=1",
        "status=401,echo_key=1",
        "drop=mid",
        "drop=headers",
    ):
        openai_fake.faults.push(spec)
        with pytest.raises(UpstreamError) as info:
            await _collect(backend.stream(_request()))
        errors.append(info.value)
    # The fake really did quote the key back (so the scrubbing was exercised).
    assert errors[0].message.count("[redacted]") >= 1
    for error in errors:
        assert VENDOR_KEY not in error.message
        assert VENDOR_KEY not in str(error.to_body())
        assert VENDOR_KEY not in str(error.headers)
    assert VENDOR_KEY not in caplog.text
    assert caplog.records  # failures were logged, just without the key


async def test_wrong_key_is_auth_failed_and_not_echoed(
    openai_fake: FakeOpenAI,
    openai_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong = "sk-wrong-key-abcdefghijklmnop"
    monkeypatch.setenv(KEY_ENV, wrong)
    b = OpenAICompatBackend(_config(openai_url))
    await b.start()
    try:
        with pytest.raises(UpstreamError) as info:
            await b.complete(_request())
    finally:
        await b.aclose()
    assert info.value.code == "upstream_auth_failed" and not info.value.retryable
    assert wrong[-4:] not in info.value.message
    assert KEY_ENV in info.value.message  # tells the operator which variable to fix
    assert wrong not in caplog.text


@pytest.mark.parametrize(
    ("options", "sent"),
    [
        ({}, False),
        ({"forward_user": False}, False),
        ({"forward_user": "yes"}, False),
        ({"forward_user": True}, True),
    ],
)
async def test_user_id_is_forwarded_only_when_configured(
    openai_fake: FakeOpenAI,
    openai_url: str,
    vendor_key: str,
    options: dict[str, Any],
    sent: bool,
) -> None:
    b = OpenAICompatBackend(_config(openai_url, options=options))
    await b.start()
    try:
        await b.complete(_request(user="jane.doe@example.org"))
        await _collect(b.stream(_request(user="jane.doe@example.org")))
    finally:
        await b.aclose()
    for body in openai_fake.bodies:
        assert body.get("user") == ("jane.doe@example.org" if sent else None)


# -- connection pool -----------------------------------------------------------------------


async def test_connections_are_reused_after_whole_and_streamed_answers(
    backend: OpenAICompatBackend, openai_fake: FakeOpenAI
) -> None:
    for _ in range(3):
        await backend.complete(_request())
        await _collect(backend.stream(_request()))
    assert len({r.peer for r in openai_fake.requests}) == 1


async def test_pool_size_bounds_concurrent_connections(
    openai_fake: FakeOpenAI, openai_url: str, vendor_key: str
) -> None:
    b = OpenAICompatBackend(_config(openai_url, max_connections=2))
    await b.start()
    try:
        openai_fake.faults.push(*["delay=0.3"] * 4)
        started = time.monotonic()
        await asyncio.gather(*(b.complete(_request()) for _ in range(4)))
        elapsed = time.monotonic() - started
    finally:
        await b.aclose()
    assert len({r.peer for r in openai_fake.requests}) == 2
    assert elapsed >= 0.6  # two waves of two


# -- several events in one network read ---------------------------------------------------


def _event(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
    choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish, **extra}
    return b"data: " + orjson.dumps({"choices": [choice]}) + b"\n\n"


#: A whole answer in one write, as a batching server or proxy sends it: text, two tool-call
#: fragments, a stop sequence on the finish, usage, [DONE].
ONE_WRITE = b"".join(
    [
        _event({"role": "assistant", "content": ""}),
        _event({"content": "one "}),
        _event({"content": "two"}),
        _event({"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "f"}}]}),
        _event({"tool_calls": [{"index": 0, "function": {"arguments": '{"x": 1}'}}]}),
        _event({}, "stop", stop_reason="END"),
        b'data: {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3}}\n\n',
        b"data: [DONE]\n\n",
    ]
)


async def test_events_sent_in_one_write_arrive_intact_and_in_order(vendor_key: str) -> None:
    from starlette.applications import Starlette
    from starlette.responses import StreamingResponse
    from starlette.routing import Route
    from tests.fakes.server import run_server

    async def one_write(request: Any) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            yield ONE_WRITE

        return StreamingResponse(body(), media_type="text/event-stream")

    app = Starlette(routes=[Route("/v1/chat/completions", one_write, methods=["POST"])])
    with run_server(app) as url:
        backend = OpenAICompatBackend(_config(url))
        await backend.start()
        try:
            request = _request(stop=["END"])
            batches = [b async for b in backend.stream_batches(request)]
            deltas = await _collect(backend.stream(request))
        finally:
            await backend.aclose()
    assert all(batches)
    assert [d for b in batches for d in b] == deltas
    assert [d.text for d in deltas] == ["one ", "two", "", "", ""]
    assert [f.arguments for d in deltas[2:4] for f in d.tool_calls] == ["", '{"x": 1}']
    assert deltas[2].tool_calls[0].id == "call_1" and deltas[2].tool_calls[0].name == "f"
    last = deltas[-1]
    assert (last.finish_reason, last.stop_sequence) == ("stop", "END")
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (5, 3)
