"""The fakes are only useful if they are faithful: the vendors' own SDKs must accept them.

The official ``openai`` and ``anthropic`` clients parse every response shape, stream event
and error body the fakes produce; the Anthropic SDK's stream accumulator also checks the
event order. If a fake drifted from the protocol, these tests fail before the backend
tests could pass against a wrong picture of the vendor.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
from tests.backends._keys import VENDOR_KEY
from tests.fakes import FakeAnthropic, FakeOpenAI, run_server

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def oa(openai_fake: FakeOpenAI, openai_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{openai_url}/v1", api_key=VENDOR_KEY, max_retries=0)


@pytest.fixture
def an(anthropic_fake: FakeAnthropic, anthropic_url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=anthropic_url, api_key=VENDOR_KEY, max_retries=0)


# -- OpenAI --------------------------------------------------------------------------------


def test_openai_sdk_parses_a_completion(oa: openai.OpenAI) -> None:
    reply = oa.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi there"}]
    )
    assert reply.object == "chat.completion" and reply.id.startswith("chatcmpl-")
    assert reply.choices[0].message.content == "Echo: hi there"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.total_tokens == 2 + 3


def test_openai_sdk_parses_a_stream_with_usage(oa: openai.OpenAI) -> None:
    chunks = list(oa.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "a b c"}],
        stream=True, stream_options={"include_usage": True}, max_tokens=3,
    ))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: a b "
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3
    assert len({c.id for c in chunks}) == 1


def test_openai_sdk_reads_error_bodies(oa: openai.OpenAI, openai_fake: FakeOpenAI) -> None:
    openai_fake.faults.push("status=429,retry_after=2")
    with pytest.raises(openai.RateLimitError) as info:
        oa.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert info.value.code == "rate_limit_exceeded"
    assert info.value.response.headers["retry-after"] == "2"
    with pytest.raises(openai.BadRequestError) as bad:
        oa.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}],
            stream_options={"include_usage": True},
        )
    assert "stream_options" in bad.value.message


def test_openai_fake_checks_the_key(openai_url: str) -> None:
    client = openai.OpenAI(base_url=f"{openai_url}/v1", api_key="sk-nope-000000", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert info.value.code == "invalid_api_key"


# -- Anthropic -----------------------------------------------------------------------------


def test_anthropic_sdk_parses_a_message(an: anthropic.Anthropic) -> None:
    message = an.messages.create(
        model="claude-test", max_tokens=50, system="be kind",
        messages=[{"role": "user", "content": "hi there"}], stop_sequences=["there"],
    )
    assert message.id.startswith("msg_") and message.type == "message"
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == "Echo: hi "  # type: ignore[union-attr]
    assert message.stop_reason == "stop_sequence" and message.stop_sequence == "there"
    assert message.usage.input_tokens == 4


def test_anthropic_sdk_accumulates_a_stream(an: anthropic.Anthropic) -> None:
    with an.messages.stream(
        model="claude-test", max_tokens=2, messages=[{"role": "user", "content": "a b c"}]
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert pieces == ["Echo: ", "a "]
    assert final.stop_reason == "max_tokens"
    assert final.usage.output_tokens == 2 and final.usage.input_tokens == 3


def test_anthropic_sdk_reads_error_bodies_and_stream_errors(
    an: anthropic.Anthropic, anthropic_fake: FakeAnthropic
) -> None:
    anthropic_fake.faults.push("status=529")
    with pytest.raises(anthropic.APIStatusError) as info:
        an.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 529
    assert info.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]

    anthropic_fake.faults.push("stream_error=overloaded_error,after=1")
    with pytest.raises(anthropic.APIError), an.messages.stream(
        model="m", max_tokens=5, messages=[{"role": "user", "content": "x y"}]
    ) as stream:
        list(stream.text_stream)

    with pytest.raises(anthropic.BadRequestError) as bad:
        an.messages.create(
            model="m", max_tokens=5,
            messages=[{"role": "system", "content": "s"}, {"role": "user", "content": "x"}],
        )
    assert "system" in bad.value.message


# -- control surface -----------------------------------------------------------------------


def test_faults_by_model_name_header_and_control_endpoint(
    openai_fake: FakeOpenAI, openai_url: str
) -> None:
    auth = {"authorization": f"Bearer {VENDOR_KEY}"}
    body = {"model": "fault:status=503", "messages": [{"role": "user", "content": "x"}]}
    with httpx.Client(base_url=openai_url, headers=auth) as client:
        assert client.post("/v1/chat/completions", json=body).status_code == 503
        ok = {**body, "model": "m"}
        r = client.post("/v1/chat/completions", json=ok, headers={"x-fake-fault": "status=500"})
        assert r.status_code == 500
        assert r.json()["error"]["type"] == "server_error"
        client.post("/_fake/faults", json={"faults": ["status=429", "ok"]})
        assert client.post("/v1/chat/completions", json=ok).status_code == 429
        assert client.post("/v1/chat/completions", json=ok).status_code == 200
        recorded = client.get("/_fake/requests").json()
    assert [r["model"] for r in recorded] == ["fault:status=503", "m", "m", "m"]
    assert openai_fake.bodies == recorded


def test_requests_are_recorded_even_when_the_vendor_fails(anthropic_fake: FakeAnthropic,
                                                           anthropic_url: str) -> None:
    anthropic_fake.faults.push("drop=headers")
    with httpx.Client(base_url=anthropic_url) as client, pytest.raises(httpx.TransportError):
        client.post("/v1/messages", json={"secret": "4111 1111 1111 1111"})
    assert anthropic_fake.bodies == [{"secret": "4111 1111 1111 1111"}]


def test_fresh_fake_with_run_server_is_isolated() -> None:
    fake = FakeAnthropic()
    with run_server(fake.app) as url:
        r = httpx.post(f"{url}/v1/messages", json={}, headers={"anthropic-version": "2023-06-01"})
    assert r.status_code == 401
    assert r.json()["error"] == {"type": "authentication_error",
                                 "message": "x-api-key header is required"}


@pytest.mark.parametrize("vendor", ["openai", "anthropic"])
def test_fakes_run_as_standalone_processes(vendor: str) -> None:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.Popen(
        [sys.executable, "-W", "error::RuntimeWarning", "-m", "tests.fakes.serve", vendor,
         "--port", "0", "--api-key", VENDOR_KEY],
        cwd=root, env=env, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        name, _, base = proc.stdout.readline().strip().partition("=")
        assert name == f"FAKE_{vendor.upper()}_BASE_URL"
        assert base.startswith("http://127.0.0.1:")
        for _ in range(200):
            try:
                if vendor == "openai":
                    client = openai.OpenAI(base_url=base, api_key=VENDOR_KEY, max_retries=0)
                    reply = client.chat.completions.create(
                        model="m", messages=[{"role": "user", "content": "x"}]
                    )
                    text = reply.choices[0].message.content
                else:
                    ac = anthropic.Anthropic(base_url=base, api_key=VENDOR_KEY, max_retries=0)
                    message = ac.messages.create(
                        model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}]
                    )
                    text = message.content[0].text  # type: ignore[union-attr]
                break
            except (openai.APIConnectionError, anthropic.APIConnectionError):
                time.sleep(0.05)
        assert text == "Echo: x"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
