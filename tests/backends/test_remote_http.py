"""Pieces of the shared vendor HTTP plumbing that are easiest to check directly."""

from __future__ import annotations

import email.utils
import time

import pytest

from wardgate.backends.remote import HTTPUpstream, parse_retry_after, upstream_message
from wardgate.config import ModelConfig


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
