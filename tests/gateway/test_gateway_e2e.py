"""The whole gateway over real HTTP, real SmolLM2 inference, real SQLite, the official SDK."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from tests.conftest import serve_in_thread

from wardgate.config import GatewayConfig
from wardgate.gateway.app import create_app
from wardgate.gateway.service import Gateway

PROMPT_MARKER = "zebra-marmalade-7731"


class Running:
    def __init__(self, url: str, gateway: Gateway, keys: dict[str, str]) -> None:
        self.url = url
        self.gateway = gateway
        self.keys = keys

    def client(self, key: str = "user") -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=self.keys[key], max_retries=0)

    def post(
        self,
        body: Any = None,
        *,
        key: str | None = "user",
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        h = {"content-type": "application/json", **(headers or {})}
        if key is not None:
            h["authorization"] = f"Bearer {self.keys[key]}"
        if raw is None:
            return httpx.post(self.url + "/v1/chat/completions", json=body, headers=h, timeout=60)
        return httpx.post(self.url + "/v1/chat/completions", content=raw, headers=h, timeout=60)


def gateway_config(tmp: Path, **overrides: Any) -> GatewayConfig:
    raw: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp / 'wardgate.db'}",
        "auth": {"secret_file": str(tmp / "secret"), "secret_env": "WARDGATE_TEST_NO_SUCH_VAR"},
        "server": {"max_body_bytes": 64 * 1024},
        # The HTTP surface itself, without guards (they have their own e2e tests).
        "guards": {"input": [], "output": []},
        "models": [
            {"name": "smol", "backend": "llamacpp", "n_ctx": 512, "max_output_tokens": 64},
            {"name": "smol-b", "backend": "llamacpp", "n_ctx": 512, "max_output_tokens": 64},
        ],
    }
    raw.update(overrides)
    return GatewayConfig.model_validate(raw)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    tmp = tmp_path_factory.mktemp("gw")
    config = gateway_config(tmp)
    gateway = Gateway(config)
    store = gateway.keys
    keys = {
        "user": store.create(owner="app", models=["smol"])[1],
        "all": store.create(owner="all")[1],
        "admin": store.create(owner="ops", admin=True)[1],
        "limited": store.create(owner="limited", rpm=2)[1],
        "expired": store.create(owner="old", expires_at=datetime.now(UTC) - timedelta(seconds=1))[
            1
        ],
    }
    revoked, raw_revoked = store.create(owner="gone")
    store.revoke(revoked.id)
    keys["revoked"] = raw_revoked
    with serve_in_thread(create_app(config, gateway=gateway)) as url:
        yield Running(url, gateway, keys)


def test_openai_sdk_non_streaming(running: Running) -> None:
    reply = running.client().chat.completions.create(
        model="smol",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello."},
        ],
        max_tokens=12,
        temperature=0,
        seed=3,
        user="alice",
    )
    assert reply.id.startswith("chatcmpl-")
    assert reply.object == "chat.completion"
    assert reply.model == "smol"
    assert reply.created > 1_700_000_000
    choice = reply.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert reply.usage is not None
    assert reply.usage.prompt_tokens > 5
    assert 0 < reply.usage.completion_tokens <= 12
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_openai_sdk_streaming_with_usage(running: Running) -> None:
    client = running.client()
    whole = client.chat.completions.create(
        model="smol",
        messages=[{"role": "user", "content": "List two fruits."}],
        max_tokens=16,
        temperature=0,
        seed=1,
    )
    stream = client.chat.completions.create(
        model="smol",
        messages=[{"role": "user", "content": "List two fruits."}],
        max_tokens=16,
        temperature=0,
        seed=1,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 2
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finishes == [whole.choices[0].finish_reason]
    assert chunks[-1].usage is not None and chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens  # type: ignore[union-attr]
    assert len({c.id for c in chunks}) == 1


def test_models_lists_only_what_the_key_may_use(running: Running) -> None:
    assert [m.id for m in running.client("user").models.list()] == ["smol"]
    assert sorted(m.id for m in running.client("all").models.list()) == ["smol", "smol-b"]


@pytest.mark.parametrize(
    ("key", "code"),
    [
        (None, "missing_api_key"),
        ("bogus", "invalid_api_key"),
        ("revoked", "key_revoked"),
        ("expired", "key_expired"),
    ],
)
def test_bad_keys_get_401(running: Running, key: str | None, code: str) -> None:
    headers = {}
    if key == "bogus":
        headers["authorization"] = "Bearer wg-not-a-real-key"
    response = running.post(
        {"model": "smol", "messages": [{"role": "user", "content": "hi"}]},
        key=key if key not in (None, "bogus") else None,
        headers=headers,
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == code


def test_model_not_allowed_is_403_and_unknown_is_404(running: Running) -> None:
    forbidden = running.post({"model": "smol-b", "messages": [{"role": "user", "content": "hi"}]})
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["code"] == "model_not_allowed"
    unknown = running.post(
        {"model": "gpt-nothing", "messages": [{"role": "user", "content": "hi"}]}, key="all"
    )
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "model_not_found"


BAD_BODIES: list[tuple[str, dict[str, Any] | None, bytes | None, int, str]] = [
    ("malformed json", None, b'{"model": "smol", "messages": [', 400, "invalid_json"),
    ("not an object", None, b"[1, 2, 3]", 400, "invalid_json"),
    ("empty body", None, b"", 400, "invalid_json"),
    (
        "invalid utf-8",
        None,
        b'{"model": "smol", "messages": [{"role": "user", "content": "\xff\xfe"}]}',
        400,
        "invalid_json",
    ),
    ("wrong type", {"model": "smol", "messages": "hello"}, None, 400, "invalid_request_body"),
    ("empty messages", {"model": "smol", "messages": []}, None, 400, "invalid_request_body"),
    (
        "blank content",
        {"model": "smol", "messages": [{"role": "user", "content": "  "}]},
        None,
        400,
        "invalid_request_body",
    ),
    (
        "bad role",
        {"model": "smol", "messages": [{"role": "wizard", "content": "x"}]},
        None,
        400,
        "invalid_request_body",
    ),
    (
        "absurd max_tokens",
        {"model": "smol", "messages": [{"role": "user", "content": "x"}], "max_tokens": 10**12},
        None,
        400,
        "invalid_request_body",
    ),
    (
        "max_tokens over model limit",
        {"model": "smol", "messages": [{"role": "user", "content": "x"}], "max_tokens": 5000},
        None,
        400,
        "max_tokens_too_large",
    ),
    (
        "negative temperature",
        {"model": "smol", "messages": [{"role": "user", "content": "x"}], "temperature": -1},
        None,
        400,
        "invalid_request_body",
    ),
    (
        "prompt longer than context",
        {"model": "smol", "messages": [{"role": "user", "content": "lorem ipsum " * 900}]},
        None,
        400,
        "context_length_exceeded",
    ),
    (
        "oversize body",
        {"model": "smol", "messages": [{"role": "user", "content": "x" * 70_000}]},
        None,
        413,
        "request_too_large",
    ),
]


@pytest.mark.parametrize(
    ("name", "body", "raw", "status", "code"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES]
)
def test_bad_input_is_a_clear_4xx(
    running: Running, name: str, body: Any, raw: bytes | None, status: int, code: str
) -> None:
    response = running.post(body, raw=raw)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert "Traceback" not in response.text


def test_prompt_too_long_streaming_is_also_a_4xx(running: Running) -> None:
    response = running.post(
        {
            "model": "smol",
            "stream": True,
            "messages": [{"role": "user", "content": "lorem ipsum " * 900}],
        }
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "context_length_exceeded"


def test_rate_limit_429_with_headers(running: Running) -> None:
    # Prompts over the context length take a request token and then fail fast (400), so the
    # test does not depend on how long inference takes on a loaded machine.
    body = {"model": "smol", "messages": [{"role": "user", "content": "lorem ipsum " * 900}]}
    first = running.post(body, key="limited")
    assert first.status_code == 400
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert running.post(body, key="limited").status_code == 400
    third = running.post(body, key="limited")
    assert third.status_code == 429
    assert third.json()["error"]["code"] == "rate_limit_exceeded"
    assert int(third.headers["retry-after"]) >= 1
    assert third.headers["x-ratelimit-remaining-requests"] == "0"


def test_health_ready_and_metrics(running: Running) -> None:
    assert httpx.get(running.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(running.url + "/readyz").json()
    assert ready["status"] == "ready" and ready["models"] == ["smol", "smol-b"]
    running.client().chat.completions.create(
        model="smol", messages=[{"role": "user", "content": "hi"}], max_tokens=2
    )
    text = httpx.get(running.url + "/metrics").text
    assert 'wardgate_requests_total{model="smol",status="200"}' in text
    assert (
        'wardgate_request_duration_seconds_bucket{le="0.001",model="smol",stream="false"}' in text
    )
    assert 'wardgate_tokens_total{kind="completion",model="smol"}' in text
    assert 'wardgate_queue_depth{model="smol"} 0.0' in text
    assert 'wardgate_errors_total{code="invalid_api_key"}' in text


def test_admin_api_creates_uses_and_revokes_keys(running: Running) -> None:
    admin = {"authorization": f"Bearer {running.keys['admin']}"}
    denied = httpx.post(
        running.url + "/admin/keys",
        json={"owner": "x"},
        headers={"authorization": f"Bearer {running.keys['user']}"},
    )
    assert denied.status_code == 403
    created = httpx.post(
        running.url + "/admin/keys",
        headers=admin,
        json={"owner": "svc", "models": ["smol-b"], "tier": "restricted"},
    )
    assert created.status_code == 201
    new = created.json()
    assert new["key"].startswith("wg-") and new["tier"] == "restricted"
    client = openai.OpenAI(base_url=running.url + "/v1", api_key=new["key"], max_retries=0)
    assert [m.id for m in client.models.list()] == ["smol-b"]
    listing = httpx.get(running.url + "/admin/keys", headers=admin).json()["data"]
    assert any(k["id"] == new["id"] for k in listing)
    assert all("key" not in k for k in listing)  # raw keys are never listed
    revoked = httpx.post(running.url + f"/admin/keys/{new['id']}/revoke", headers=admin)
    assert revoked.status_code == 200
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


def test_no_keys_or_prompts_in_logs(
    running: Running, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    client = running.client()
    client.chat.completions.create(
        model="smol",
        messages=[{"role": "user", "content": f"Repeat {PROMPT_MARKER}"}],
        max_tokens=4,
    )
    running.post({"model": "smol", "messages": [{"role": "user", "content": PROMPT_MARKER * 3000}]})
    running.post({"model": "smol", "messages": PROMPT_MARKER})
    running.post(raw=f'{{"model": "smol", "messages": [{{"content": "{PROMPT_MARKER}"'.encode())
    captured = capfd.readouterr()
    everything = caplog.text + captured.out + captured.err
    assert PROMPT_MARKER not in everything
    for raw in running.keys.values():
        assert raw not in everything


def test_audit_records_every_request_in_a_verifiable_chain(running: Running) -> None:
    from wardgate.store.audit import tail, verify_chain

    reply = running.client().chat.completions.create(
        model="smol", messages=[{"role": "user", "content": "audit me"}], max_tokens=3, user="bob"
    )
    running.post({"model": "smol", "messages": []})
    assert running.gateway.audit.flush()
    report = verify_chain(running.gateway.engine)
    assert report.ok, report
    assert report.checked >= 2
    ok, bad = tail(running.gateway.engine, 2)
    assert ok["request_id"] == reply.id
    assert ok["user"] == "bob" and ok["status"] == 200 and ok["client_ip"] == "127.0.0.1"
    assert ok["model_asked"] == "smol" and ok["backend_used"] == "smol"
    assert ok["completion_tokens"] == reply.usage.completion_tokens  # type: ignore[union-attr]
    assert ok["latency_ms"] > 0
    assert ok["prompt"] is None and ok["completion"] is None  # store_prompts: none
    assert ok["routing"]["attempts"][0]["outcome"] == "ok"
    assert ok["key_id"]
    assert bad["status"] == 400 and bad["error_code"] == "invalid_request_body"
