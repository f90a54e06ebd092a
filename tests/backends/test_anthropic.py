"""The Anthropic backend against a real (fake) Messages API server over HTTP.

The fake rejects what the real API rejects (a ``system`` role in ``messages``, unknown
top-level fields such as ``seed``, empty text blocks, a ``tool_result`` without a matching
``tool_use``, temperature above 1), so a 200 here means the translation was accepted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.backends._keys import KEY_ENV, VENDOR_KEY
from tests.fakes import FakeAnthropic

from wardgate.backends.anthropic import ANTHROPIC_VERSION, AnthropicBackend
from wardgate.backends.base import create_backend
from wardgate.chat import ChatRequest, Delta
from wardgate.config import ModelConfig
from wardgate.errors import ConfigError, InvalidRequest, UpstreamError, UpstreamTimeout

pytestmark = pytest.mark.timeout(30)


def _config(base_url: str, **overrides: Any) -> ModelConfig:
    fields: dict[str, Any] = {
        "name": "claude",
        "backend": "anthropic",
        "base_url": base_url,
        "api_key_env": KEY_ENV,
        "upstream_model": "claude-sonnet-4-5",
        "max_output_tokens": 64,
        "timeout_s": 5.0,
        "connect_timeout_s": 2.0,
        "tags": {"deployment": "vendor", "weights": "closed"},
    }
    fields.update(overrides)
    return ModelConfig(**fields)


def _request(text: str = "hello there world", **fields: Any) -> ChatRequest:
    return ChatRequest.model_validate(
        {"model": "claude", "messages": [{"role": "user", "content": text}], **fields}
    )


@pytest.fixture
async def backend(
    anthropic_fake: FakeAnthropic, anthropic_url: str, vendor_key: str
) -> AsyncIterator[AnthropicBackend]:
    b = AnthropicBackend(_config(anthropic_url))
    await b.start()
    yield b
    await b.aclose()


async def _collect(stream: AsyncIterator[Delta]) -> list[Delta]:
    return [d async for d in stream]


# -- translation ---------------------------------------------------------------------------


async def test_entry_point_builds_this_backend(anthropic_url: str) -> None:
    assert isinstance(create_backend(_config(anthropic_url)), AnthropicBackend)


async def test_complete_translates_request_and_response(
    backend: AnthropicBackend, anthropic_fake: FakeAnthropic
) -> None:
    request = ChatRequest.model_validate(
        {
            "model": "claude",
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "developer", "content": "Never reveal the canary."},
                {"role": "user", "content": "first part"},
                {"role": "user", "content": "hello there world"},
            ],
            "seed": 3,
            "user": "u-7",
            "stop": ["zzz"],
            "temperature": 0.5,
        }
    )
    completion = await backend.complete(request)

    assert completion.text == "Echo: first part hello there world"
    assert completion.finish_reason == "stop"
    # system (3 + 4 words) + both user texts (2 + 3)
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (12, 6)
    [seen] = anthropic_fake.requests
    assert seen.path == "/v1/messages"
    assert seen.headers["x-api-key"] == VENDOR_KEY
    assert seen.headers["anthropic-version"] == ANTHROPIC_VERSION == "2023-06-01"
    assert "authorization" not in seen.headers
    assert seen.body == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "system": "You are terse.\n\nNever reveal the canary.",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "first part"},
                    {"type": "text", "text": "hello there world"},
                ],
            }
        ],
        "temperature": 0.5,
        "stop_sequences": ["zzz"],
    }  # no metadata.user_id: client ids stay home unless forward_user is set


async def test_tool_calls_and_results_become_content_blocks(
    backend: AnthropicBackend, anthropic_fake: FakeAnthropic
) -> None:
    request = ChatRequest.model_validate(
        {
            "model": "claude",
            "messages": [
                {"role": "user", "content": "weather in Paris?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "toolu_01",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "toolu_01", "content": "sunny"},
                {"role": "user", "content": "and so?"},
            ],
        }
    )
    completion = await backend.complete(request)

    assert completion.text == "Echo: sunny and so?"
    assert anthropic_fake.bodies[0]["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "weather in Paris?"}]},
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "toolu_01",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                }
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": "sunny"},
                {"type": "text", "text": "and so?"},
            ],
        },
    ]


async def test_sampling_parameters_fit_anthropic_ranges(
    backend: AnthropicBackend, anthropic_fake: FakeAnthropic
) -> None:
    await backend.complete(_request(temperature=1.7, top_p=0.5))
    await backend.complete(_request(top_p=0.5))
    first, second = anthropic_fake.bodies
    assert first["temperature"] == 1.0 and "top_p" not in first
    assert second["top_p"] == 0.5 and "temperature" not in second


async def test_only_system_messages_is_an_invalid_request(
    backend: AnthropicBackend, anthropic_fake: FakeAnthropic
) -> None:
    request = ChatRequest.model_validate(
        {"model": "claude", "messages": [{"role": "system", "content": "hi"}]}
    )
    with pytest.raises(InvalidRequest):
        await backend.complete(request)
    assert anthropic_fake.requests == []


async def test_bad_tool_arguments_are_an_invalid_request(backend: AnthropicBackend) -> None:
    request = ChatRequest.model_validate(
        {
            "model": "claude",
            "messages": [
                {"role": "user", "content": "x"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "t",
                            "type": "function",
                            "function": {"name": "f", "arguments": "[1"},
                        }
                    ],
                },
            ],
        }
    )
    with pytest.raises(InvalidRequest):
        await backend.complete(request)


# -- finish reasons ------------------------------------------------------------------------


async def test_max_tokens_gives_length(backend: AnthropicBackend) -> None:
    completion = await backend.complete(_request(max_tokens=2))
    assert (completion.text, completion.finish_reason) == ("Echo: hello ", "length")


async def test_stop_sequence_gives_stop(backend: AnthropicBackend) -> None:
    completion = await backend.complete(_request(stop="there"))
    assert (completion.text, completion.finish_reason) == ("Echo: hello ", "stop")


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("end_turn", "stop"),
        ("max_tokens", "length"),
        ("stop_sequence", "stop"),
        ("something_new", "stop"),
    ],
)
async def test_stop_reasons_map_to_finish_reasons(
    backend: AnthropicBackend, anthropic_fake: FakeAnthropic, stop_reason: str, finish: str
) -> None:
    anthropic_fake.faults.push(f"finish={stop_reason}", f"finish={stop_reason}")
    assert (await backend.complete(_request())).finish_reason == finish
    assert (await _collect(backend.stream(_request())))[-1].finish_reason == finish


async def test_max_tokens_above_model_limit_is_refused(backend: AnthropicBackend) -> None:
    with pytest.raises(InvalidRequest):
        await backend.complete(_request(max_tokens=1000))


# -- streaming -----------------------------------------------------------------------------


async def test_stream_yields_text_deltas_then_finish_and_usage(
    backend: AnthropicBackend, anthropic_fake: FakeAnthropic
) -> None:
    deltas = await _collect(backend.stream(_request(max_tokens=10)))

    assert [d.text for d in deltas[:-1]] == ["Echo: ", "hello ", "there ", "world"]
    last = deltas[-1]
    assert (last.text, last.finish_reason) == ("", "stop")
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (3, 4)
    assert anthropic_fake.bodies[0]["stream"] is True
    assert anthropic_fake.bodies[0]["max_tokens"] == 10


async def test_stream_is_passed_through_as_it_arrives(
    backend: AnthropicBackend, anthropic_fake: FakeAnthropic
) -> None:
    anthropic_fake.faults.push("chunk_delay=0.15")
    started = time.monotonic()
    arrivals = [time.monotonic() - started async for d in backend.stream(_request()) if d.text]
    assert len(arrivals) == 4
    assert arrivals[-1] - arrivals[0] >= 0.3


async def test_queue_depth_counts_streams_in_flight(
    backend: AnthropicBackend, anthropic_fake: FakeAnthropic
) -> None:
    anthropic_fake.faults.push("delay=0.8")
    task = asyncio.create_task(_collect(backend.stream(_request())))
    for _ in range(100):
        if anthropic_fake.requests:
            break
        await asyncio.sleep(0.01)
    assert backend.queue_depth() == 1
    await task
    assert backend.queue_depth() == 0


# -- errors --------------------------------------------------------------------------------

ERROR_CASES = [
    ("status=429,retry_after=3", True, "upstream_rate_limited", 429),
    ("status=500", True, "upstream_unavailable", 500),
    ("status=503", True, "upstream_unavailable", 503),
    ("status=529", True, "upstream_overloaded", 529),
    ("status=400", False, "upstream_rejected_request", 400),
    ("status=404", False, "upstream_rejected_request", 404),
    ("status=413", False, "upstream_rejected_request", 413),
    ("status=401", False, "upstream_auth_failed", 401),
    ("status=403", False, "upstream_auth_failed", 403),
]


@pytest.mark.parametrize("mode", ["complete", "stream"])
@pytest.mark.parametrize(("spec", "retryable", "code", "status"), ERROR_CASES)
async def test_http_errors_map_to_typed_errors(
    backend: AnthropicBackend,
    anthropic_fake: FakeAnthropic,
    mode: str,
    spec: str,
    retryable: bool,
    code: str,
    status: int,
) -> None:
    anthropic_fake.faults.push(spec)
    with pytest.raises(UpstreamError) as info:
        if mode == "complete":
            await backend.complete(_request())
        else:
            await _collect(backend.stream(_request()))
    error = info.value
    assert type(error) is UpstreamError
    assert (error.retryable, error.code, error.upstream_status) == (retryable, code, status)
    assert error.status == 502
    if status == 429:
        assert error.retry_after == 3.0
    if status == 529:
        assert "Overloaded" in error.message  # the vendor's reason, sanitised


async def test_real_validation_errors_surface_as_non_retryable(
    backend: AnthropicBackend, anthropic_fake: FakeAnthropic
) -> None:
    # The translation never sends OpenAI-only fields...
    body = backend.build_body(_request(seed=1, stop="x"), stream=False)
    assert "seed" not in body and "stop" not in body
    # ...and if one did, the vendor's 400 would come back non-retryable with its reason.
    body["seed"] = 1
    with pytest.raises(UpstreamError) as info:
        await backend._http.post_json("/v1/messages", body)
    assert not info.value.retryable and info.value.upstream_status == 400
    assert "seed: Extra inputs are not permitted" in info.value.message


@pytest.mark.parametrize(
    ("error_type", "retryable", "code"),
    [
        ("overloaded_error", True, "upstream_overloaded"),
        ("api_error", True, "upstream_stream_error"),
        ("invalid_request_error", False, "upstream_stream_error"),
    ],
)
async def test_error_event_mid_stream_raises(
    backend: AnthropicBackend,
    anthropic_fake: FakeAnthropic,
    error_type: str,
    retryable: bool,
    code: str,
) -> None:
    anthropic_fake.faults.push(f"stream_error={error_type},after=2")
    received: list[Delta] = []
    with pytest.raises(UpstreamError) as info:
        async for delta in backend.stream(_request()):
            received.append(delta)
    assert [d.text for d in received] == ["Echo: ", "hello "]
    assert (info.value.retryable, info.value.code) == (retryable, code)
    assert error_type in info.value.message


@pytest.mark.parametrize("spec", ["drop=mid,after=1", "drop=clean,after=1"])
async def test_stream_cut_before_message_stop_raises(
    backend: AnthropicBackend, anthropic_fake: FakeAnthropic, spec: str
) -> None:
    anthropic_fake.faults.push(spec)
    received: list[Delta] = []
    with pytest.raises(UpstreamError) as info:
        async for delta in backend.stream(_request()):
            received.append(delta)
    assert [d.text for d in received] == ["Echo: "]
    assert info.value.retryable and info.value.code == "upstream_connection_lost"
    assert backend.queue_depth() == 0


@pytest.mark.parametrize("mode", ["complete", "stream"])
async def test_drop_before_headers_is_retryable(
    backend: AnthropicBackend, anthropic_fake: FakeAnthropic, mode: str
) -> None:
    anthropic_fake.faults.push("drop=headers")
    with pytest.raises(UpstreamError) as info:
        if mode == "complete":
            await backend.complete(_request())
        else:
            await _collect(backend.stream(_request()))
    assert info.value.retryable and info.value.code == "upstream_connection_lost"


@pytest.mark.parametrize("mode", ["complete", "stream"])
async def test_slow_upstream_times_out(
    anthropic_fake: FakeAnthropic, anthropic_url: str, vendor_key: str, mode: str
) -> None:
    anthropic_fake.faults.push("delay=2")
    b = AnthropicBackend(_config(anthropic_url, timeout_s=0.3))
    await b.start()
    try:
        with pytest.raises(UpstreamTimeout) as info:
            if mode == "complete":
                await b.complete(_request())
            else:
                await _collect(b.stream(_request()))
    finally:
        await b.aclose()
    assert info.value.retryable and info.value.status == 504


# -- key handling --------------------------------------------------------------------------


async def test_key_is_required(anthropic_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError):
        await AnthropicBackend(_config(anthropic_url, api_key_env=None)).start()
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(ConfigError) as info:
        await AnthropicBackend(_config(anthropic_url)).start()
    assert KEY_ENV in info.value.message


async def test_key_never_appears_in_errors_or_logs(
    backend: AnthropicBackend, anthropic_fake: FakeAnthropic, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[UpstreamError] = []
    for spec in (
        "status=400,echo_key=1",
        "status=529,echo_key=1",
        "status=403,echo_key=1",
        "stream_error=overloaded_error",
        "drop=mid",
    ):
        anthropic_fake.faults.push(spec)
        with pytest.raises(UpstreamError) as info:
            await _collect(backend.stream(_request()))
        errors.append(info.value)
    assert "[redacted]" in errors[0].message
    for error in errors:
        assert VENDOR_KEY not in error.message
        assert VENDOR_KEY not in str(error.to_body())
    assert VENDOR_KEY not in caplog.text
    assert caplog.records


async def test_wrong_key_is_auth_failed(
    anthropic_fake: FakeAnthropic, anthropic_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-ant-wrong-0000000000")
    b = AnthropicBackend(_config(anthropic_url))
    await b.start()
    try:
        with pytest.raises(UpstreamError) as info:
            await b.complete(_request())
    finally:
        await b.aclose()
    assert info.value.code == "upstream_auth_failed" and not info.value.retryable
    assert "sk-ant-wrong" not in info.value.message


@pytest.mark.parametrize(
    ("options", "sent"),
    [({}, False), ({"forward_user": False}, False), ({"forward_user": True}, True)],
)
async def test_user_id_is_forwarded_only_when_configured(
    anthropic_fake: FakeAnthropic,
    anthropic_url: str,
    vendor_key: str,
    options: dict[str, Any],
    sent: bool,
) -> None:
    b = AnthropicBackend(_config(anthropic_url, options=options))
    await b.start()
    try:
        await b.complete(_request(user="jane.doe@example.org"))
        await _collect(b.stream(_request(user="jane.doe@example.org")))
    finally:
        await b.aclose()
    expected = {"user_id": "jane.doe@example.org"} if sent else None
    for body in anthropic_fake.bodies:
        assert body.get("metadata") == expected


async def test_connections_are_reused_after_whole_and_streamed_answers(
    backend: AnthropicBackend, anthropic_fake: FakeAnthropic
) -> None:
    for _ in range(3):
        await backend.complete(_request())
        await _collect(backend.stream(_request()))
    assert len({r.peer for r in anthropic_fake.requests}) == 1
