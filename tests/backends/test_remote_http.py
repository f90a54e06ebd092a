"""Pieces of the shared vendor HTTP plumbing that are easiest to check directly."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tests.fakes import run_server

from wardgate.backends import remote
from wardgate.backends.remote import HTTPUpstream, parse_retry_after, upstream_message
from wardgate.config import ModelConfig
from wardgate.errors import UpstreamError


def test_retry_after_in_seconds_milliseconds_and_http_date() -> None:
    assert parse_retry_after({"retry-after": "12"}) == 12.0
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert parse_retry_after({}) is None
    assert parse_retry_after({"retry-after": "soon"}) is None
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= (parse_retry_after({"retry-after": when}) or 0) <= 31


def test_upstream_message_reads_both_vendor_envelopes() -> None:
    assert upstream_message(b'{"error": {"message": "bad model", "type": "x"}}') == "bad model"
    assert upstream_message(
        b'{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}'
    ) == "Overloaded"
    assert upstream_message(b"<html>502 Bad Gateway</html>") == ""


@pytest.fixture
def upstream(monkeypatch: pytest.MonkeyPatch) -> HTTPUpstream:
    monkeypatch.setenv("WARDGATE_TEST_SANITISE_KEY", "my-very-own-key-123")
    config = ModelConfig(
        name="m",
        backend="openai",
        base_url="http://127.0.0.1:9",
        api_key_env="WARDGATE_TEST_SANITISE_KEY",
    )
    return HTTPUpstream(config, vendor="openai", auth_headers=lambda k: {}, key_required=True)


async def test_sanitise_scrubs_our_key_key_shapes_and_control_characters(
    upstream: HTTPUpstream,
) -> None:
    await upstream.start()
    try:
        text = upstream.sanitise(
            "key my-very-own-key-123 and sk-proj-abcDEF123***xyz and Bearer tok.en\x1b[31m!"
        )
    finally:
        await upstream.aclose()
    assert "my-very-own-key-123" not in text
    assert "sk-proj" not in text and "tok.en" not in text and "\x1b" not in text
    assert text.count("[redacted]") == 3
    assert len(upstream.sanitise("x" * 5000)) <= 301


# -- misbehaving upstreams -----------------------------------------------------------------


def _misbehaving_app() -> Starlette:
    async def chat(request: Request) -> Response:
        kind = request.headers.get("x-kind", "")
        if kind == "redirect":
            return Response(status_code=302, headers={"location": "http://elsewhere.invalid/"})
        if kind == "bad-gzip":
            return Response(
                b"definitely not gzip",
                media_type="application/json",
                headers={"content-encoding": "gzip"},
            )
        if kind == "big":
            return Response(b'{"pad": "' + b"x" * 5000 + b'"}', media_type="application/json")
        # Ignores "stream": true and answers with one JSON body.
        return Response(b'{"choices": []}', media_type="application/json")

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


@pytest.fixture
def misbehaving_url() -> Iterator[str]:
    with run_server(_misbehaving_app()) as url:
        yield url


async def _upstream_call(url: str, kind: str, *, stream: bool) -> None:
    config = ModelConfig(name="odd", backend="openai", base_url=f"{url}/v1")
    upstream = HTTPUpstream(
        config, vendor="openai", auth_headers=lambda k: {}, key_required=False,
        extra_headers={"x-kind": kind},
    )
    await upstream.start()
    try:
        if stream:
            async for _ in upstream.stream_events("/chat/completions", {}):
                pass
        else:
            await upstream.post_json("/chat/completions", {})
    finally:
        await upstream.aclose()


async def test_json_answer_to_a_stream_request_is_a_protocol_error(misbehaving_url: str) -> None:
    with pytest.raises(UpstreamError) as info:
        await _upstream_call(misbehaving_url, "json", stream=True)
    assert info.value.code == "upstream_protocol_error"


async def test_redirects_are_not_followed(misbehaving_url: str) -> None:
    for stream in (False, True):
        with pytest.raises(UpstreamError) as info:
            await _upstream_call(misbehaving_url, "redirect", stream=stream)
        assert (info.value.upstream_status, info.value.retryable) == (302, False)


async def test_oversized_answer_is_refused(
    misbehaving_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(remote, "MAX_RESPONSE_BYTES", 1000)
    with pytest.raises(UpstreamError) as info:
        await _upstream_call(misbehaving_url, "big", stream=False)
    assert info.value.code == "upstream_protocol_error"


async def test_corrupt_compressed_body_is_a_protocol_error(misbehaving_url: str) -> None:
    with pytest.raises(UpstreamError) as info:
        await _upstream_call(misbehaving_url, "bad-gzip", stream=False)
    assert info.value.code == "upstream_protocol_error"
