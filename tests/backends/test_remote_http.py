"""Pieces of the shared vendor HTTP plumbing that are easiest to check directly."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tests.fakes import run_server

from wardgate.backends import remote
from wardgate.backends.remote import HTTPUpstream, parse_retry_after, upstream_message
from wardgate.config import ModelConfig
from wardgate.errors import UpstreamError, UpstreamTimeout


def test_retry_after_in_seconds_milliseconds_and_http_date() -> None:
    assert parse_retry_after({"retry-after": "12"}) == 12.0
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert parse_retry_after({}) is None
    assert parse_retry_after({"retry-after": "soon"}) is None
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= (parse_retry_after({"retry-after": when}) or 0) <= 31


def test_upstream_message_reads_both_vendor_envelopes() -> None:
    assert upstream_message(b'{"error": {"message": "bad model", "type": "x"}}') == "bad model"
    assert (
        upstream_message(
            b'{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}'
        )
        == "Overloaded"
    )
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
        config,
        vendor="openai",
        auth_headers=lambda k: {},
        key_required=False,
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


# -- raw wire faults: a hand-written TCP server scripts exactly what the upstream sends ------

RawReply = Callable[[asyncio.StreamWriter, bytes], Awaitable[None]]


@contextlib.asynccontextmanager
async def _raw_server(reply: RawReply) -> AsyncIterator[tuple[str, list[bytes]]]:
    """A TCP server on a free port that reads one HTTP request per connection (head and
    ``Content-Length`` body), records it, and lets ``reply`` write whatever bytes it likes."""
    received: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                request = head + await reader.readexactly(length)
                received.append(request)
                await reply(writer, request)
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except asyncio.CancelledError:
            # Server shut down while a reply was stalling on purpose. Ending quietly keeps
            # asyncio's stream callback (which calls task.exception()) from logging noise.
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", received
    finally:
        server.close()
        await server.wait_closed()


def _http_upstream(url: str, **overrides: Any) -> HTTPUpstream:
    fields: dict[str, Any] = {
        "name": "raw",
        "backend": "openai",
        "base_url": f"{url}/v1",
        "timeout_s": 2.0,
    }
    fields.update(overrides)
    return HTTPUpstream(
        ModelConfig(**fields), vendor="openai", auth_headers=lambda k: {}, key_required=False
    )


async def _raw_call(url: str, *, stream: bool, **overrides: Any) -> list[Any]:
    upstream = _http_upstream(url, **overrides)
    await upstream.start()
    try:
        if stream:
            return [e async for e in upstream.stream_events("/chat/completions", {})]
        return [await upstream.post_json("/chat/completions", {})]
    finally:
        await upstream.aclose()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0), the way a crashing load balancer does."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


_OK_JSON = b'{"ok": true}'
_JSON_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
_SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


@pytest.mark.parametrize("stream", [False, True])
async def test_garbage_instead_of_http_is_a_protocol_error(stream: bool) -> None:
    async def reply(writer: asyncio.StreamWriter, request: bytes) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\nnot http at all\r\n\r\n")
        await writer.drain()

    async with _raw_server(reply) as (url, _):
        with pytest.raises(UpstreamError) as info:
            await _raw_call(url, stream=stream)
    assert info.value.code == "upstream_protocol_error" and info.value.retryable


@pytest.mark.parametrize("stream", [False, True])
async def test_reset_before_headers_is_connection_lost(stream: bool) -> None:
    async def reply(writer: asyncio.StreamWriter, request: bytes) -> None:
        _reset(writer)

    async with _raw_server(reply) as (url, received):
        with pytest.raises(UpstreamError) as info:
            await _raw_call(url, stream=stream)
    assert received  # the request did arrive; the answer never came
    assert info.value.code == "upstream_connection_lost" and info.value.retryable


@pytest.mark.parametrize("how", ["close", "reset"])
async def test_whole_answer_cut_short_is_connection_lost(how: str) -> None:
    async def reply(writer: asyncio.StreamWriter, request: bytes) -> None:
        writer.write(_JSON_HEAD % 1000 + b'{"choices": [')
        await writer.drain()
        await asyncio.sleep(0.05)
        if how == "reset":
            _reset(writer)
        else:
            writer.close()

    async with _raw_server(reply) as (url, _):
        with pytest.raises(UpstreamError) as info:
            await _raw_call(url, stream=False)
    assert info.value.code == "upstream_connection_lost" and info.value.retryable


async def test_whole_answer_timeout_covers_a_stalled_body() -> None:
    """``timeout_s`` bounds the whole answer, not just the wait for headers."""

    async def reply(writer: asyncio.StreamWriter, request: bytes) -> None:
        writer.write(_JSON_HEAD % 1000 + b'{"choices": [')
        await writer.drain()
        await asyncio.sleep(3)

    async with _raw_server(reply) as (url, _):
        started = time.monotonic()
        with pytest.raises(UpstreamTimeout):
            await _raw_call(url, stream=False, timeout_s=0.4)
    assert time.monotonic() - started < 2.0


async def test_stream_timeout_is_per_gap_not_per_answer() -> None:
    """A stream longer than ``timeout_s`` in total is fine while data keeps coming."""

    async def reply(writer: asyncio.StreamWriter, request: bytes) -> None:
        writer.write(_SSE_HEAD)
        for n in range(6):
            writer.write(_chunk(b"data: %d\n\n" % n))
            await writer.drain()
            await asyncio.sleep(0.15)
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async with _raw_server(reply) as (url, _):
        started = time.monotonic()
        events = await _raw_call(url, stream=True, timeout_s=0.5)
    assert time.monotonic() - started > 0.5
    assert [e.data for e in events] == [str(n) for n in range(6)]


async def test_stream_lines_split_across_chunks_and_crlf_pairs() -> None:
    """Events cut at arbitrary byte boundaries (inside a UTF-8 character, between CR and
    LF) decode exactly as if they had arrived whole."""
    body = (
        'event: a\r\ndata: {"t": "h\u00e9llo \u2028 \u2603"}\r\n\r\ndata: x\rdata: y\r\r'
    ).encode()

    async def reply(writer: asyncio.StreamWriter, request: bytes) -> None:
        writer.write(_SSE_HEAD)
        for i in range(len(body)):
            writer.write(_chunk(body[i : i + 1]))
            await writer.drain()
            await asyncio.sleep(0)
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async with _raw_server(reply) as (url, _):
        events = await _raw_call(url, stream=True)
    assert [(e.event, e.data) for e in events] == [
        ("a", '{"t": "h\u00e9llo \u2028 \u2603"}'),
        ("message", "x\ny"),
    ]


async def test_corrupt_compressed_stream_is_a_protocol_error() -> None:
    async def reply(writer: asyncio.StreamWriter, request: bytes) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"content-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n"
            + _chunk(b"data: definitely not gzip\n\n")
            + b"0\r\n\r\n"
        )
        await writer.drain()

    async with _raw_server(reply) as (url, _):
        with pytest.raises(UpstreamError) as info:
            await _raw_call(url, stream=True)
    assert info.value.code == "upstream_protocol_error"


async def test_environment_proxies_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.fakes.server import free_socket

    dead = free_socket()  # bound, never listening: any use of it would be refused
    proxy = f"http://127.0.0.1:{dead.getsockname()[1]}"
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(name, proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)

    async def reply(writer: asyncio.StreamWriter, request: bytes) -> None:
        writer.write(_JSON_HEAD % len(_OK_JSON) + _OK_JSON)
        await writer.drain()

    try:
        async with _raw_server(reply) as (url, received):
            assert await _raw_call(url, stream=False) == [{"ok": True}]
    finally:
        dead.close()
    assert received[0].startswith(b"POST /v1/chat/completions HTTP/1.1")


async def test_configured_proxy_is_used() -> None:
    async def reply(writer: asyncio.StreamWriter, request: bytes) -> None:
        writer.write(_JSON_HEAD % len(_OK_JSON) + _OK_JSON)
        await writer.drain()

    async with _raw_server(reply) as (proxy, received):
        result = await _raw_call("http://vendor.invalid", stream=False, options={"proxy": proxy})
    assert result == [{"ok": True}]
    # A forward proxy gets the absolute URL; the vendor host was never resolved here.
    assert received[0].startswith(b"POST http://vendor.invalid/v1/chat/completions HTTP/1.1")


async def test_vendor_cookies_are_not_kept_or_sent() -> None:
    async def reply(writer: asyncio.StreamWriter, request: bytes) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            b"set-cookie: __cf_bm=abc; Path=/\r\ncontent-length: %d\r\n\r\n%s"
            % (len(_OK_JSON), _OK_JSON)
        )
        await writer.drain()

    async with _raw_server(reply) as (url, received):
        # By name: cookie jars ignore cookies from bare IP hosts, which would hide a jar.
        upstream = _http_upstream(url.replace("127.0.0.1", "localhost"))
        await upstream.start()
        try:
            for _ in range(2):
                await upstream.post_json("/chat/completions", {})
        finally:
            await upstream.aclose()
    assert len(received) == 2
    assert all(b"cookie" not in r.lower().split(b"\r\n\r\n")[0] for r in received)


async def test_declared_oversized_body_is_refused_before_reading(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def reply(writer: asyncio.StreamWriter, request: bytes) -> None:
        writer.write(_JSON_HEAD % (64 * 1024 * 1024))  # headers only; the body never comes
        await writer.drain()
        await asyncio.sleep(3)

    async with _raw_server(reply) as (url, _):
        started = time.monotonic()
        with pytest.raises(UpstreamError) as info:
            await _raw_call(url, stream=False)
    assert info.value.code == "upstream_protocol_error"
    assert time.monotonic() - started < 1.5  # refused on the header, not after a timeout
