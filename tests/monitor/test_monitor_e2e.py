"""The monitor against the running gateway: real HTTP, real SQLite, a real webhook receiver.

Key stuffing gets the client IP blocked (429 ip_blocked, Retry-After); model enumeration
gets a key suspended (403 key_suspended) until ``wardgate monitor lift``; every alert is an
audit record, a Prometheus count and a signed webhook (retried after a 500).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from tests.conftest import serve_in_thread
from tests.fakes import FakeOpenAI, run_server
from typer.testing import CliRunner

from wardgate.cli.main import app as cli
from wardgate.config import GatewayConfig
from wardgate.gateway.app import create_app
from wardgate.gateway.service import Gateway
from wardgate.store.tables import audit_log

SECRET = "whsec-test-123"
HELLO = [{"role": "user", "content": "hello"}]


class Receiver:
    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, str], bytes]] = []
        self.fail_first = 1
        self.app = Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])

    async def hook(self, request: Request) -> JSONResponse:
        self.calls.append((dict(request.headers), await request.body()))
        if self.fail_first > 0:
            self.fail_first -= 1
            return JSONResponse({"error": "try again"}, status_code=500)
        return JSONResponse({"ok": True})


@dataclass
class Env:
    url: str
    gateway: Gateway
    keys: dict[str, str]
    ids: dict[str, str]
    receiver: Receiver
    config_file: Path

    def chat(self, key: str | None, model: str = "echo") -> httpx.Response:
        headers = {"authorization": f"Bearer {self.keys.get(key or '', 'sk-wrong-' + 'x' * 20)}"}
        return httpx.post(
            f"{self.url}/v1/chat/completions",
            headers=headers,
            json={"model": model, "messages": HELLO},
            timeout=30,
        )

    def alerts(self) -> list[dict[str, Any]]:
        self.gateway.monitor.drain()
        self.gateway.audit.flush()
        with self.gateway.engine.connect() as conn:
            rows = conn.execute(
                select(audit_log)
                .where(audit_log.c.kind.in_(["alert", "action"]))
                .order_by(audit_log.c.seq)
            ).mappings()
            return [dict(r) for r in rows]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("monitor")
    fake = FakeOpenAI(api_key="sk-mon")
    receiver = Receiver()
    mp = pytest.MonkeyPatch()
    mp.setenv("WG_MON_KEY", "sk-mon")
    mp.setenv("WG_MON_HOOK_SECRET", SECRET)
    with run_server(fake.app) as upstream, run_server(receiver.app) as hook:
        raw = {
            "database_url": f"sqlite:///{tmp / 'gw.db'}",
            "auth": {
                "secret_file": str(tmp / "secret"),
                "secret_env": "WG_MON_NO_SECRET",
                "key_cache_ttl_s": 0,
            },
            "guards": {"input": [], "output": []},
            "models": [
                {
                    "name": "echo",
                    "backend": "openai",
                    "base_url": f"{upstream}/v1",
                    "api_key_env": "WG_MON_KEY",
                    "retries": 0,
                    "tags": {"deployment": "on_prem"},
                }
            ],
            "monitor": {
                "rules": {
                    "auth_failures": {"threshold": 5, "window_s": 60, "action_ttl_s": 120},
                    "model_enumeration": {"threshold": 3, "action": "suspend"},
                },
                "webhooks": [
                    {"url": f"{hook}/hook", "secret_env": "WG_MON_HOOK_SECRET", "backoff_s": 0.05}
                ],
            },
        }
        config = GatewayConfig.model_validate(raw)
        config_file = tmp / "wardgate.yaml"
        import yaml

        config_file.write_text(yaml.safe_dump(raw))
        gateway = Gateway(config)
        gateway.monitor.enforcement.refresh_s = 0.2
        keys, ids = {}, {}
        for name in ("user", "prober"):
            record, keys[name] = gateway.keys.create(owner=name)
            ids[name] = record.id
        with serve_in_thread(create_app(config, gateway=gateway)) as url:
            yield Env(url, gateway, keys, ids, receiver, config_file)
    mp.undo()


def test_key_stuffing_blocks_the_ip_with_a_clear_code(env: Env) -> None:
    assert env.chat("user").status_code == 200
    for _ in range(5):
        assert env.chat(None).status_code == 401
    assert env.gateway.monitor.drain()
    blocked = env.chat("user")  # even a good key, from that address
    assert blocked.status_code == 429
    assert blocked.json()["error"]["code"] == "ip_blocked"
    assert 100 <= int(blocked.headers["retry-after"]) <= 121
    assert httpx.get(env.url + "/healthz").status_code == 200  # probes still answered
    alerts = [a for a in env.alerts() if a["error_code"] == "auth_failures"]
    assert len(alerts) == 1
    assert alerts[0]["client_ip"] == "127.0.0.1"
    assert alerts[0]["routing"]["action"] == "block_ip"
    assert alerts[0]["routing"]["evidence"]["count"] == 5
    metrics = httpx.get(env.url + "/metrics").text
    assert 'wardgate_monitor_alerts_total{action="block_ip",rule="auth_failures"} 1.0' in metrics
    assert 'wardgate_monitor_refused_total{code="ip_blocked"} 1.0' in metrics
    env.gateway.monitor.enforcement.unblock_ip("127.0.0.1")
    assert env.chat("user").status_code == 200


def test_model_enumeration_suspends_the_key_until_lifted_from_the_cli(env: Env) -> None:
    for name in ("gpt-4o", "claude-3", "llama-70b"):
        assert env.chat("prober", model=name).status_code == 404
    assert env.gateway.monitor.drain()
    refused = env.chat("prober")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "key_suspended"
    assert env.chat("user").status_code == 200  # other keys unaffected
    listed = CliRunner().invoke(cli, ["monitor", "suspended", "-c", str(env.config_file)])
    assert env.ids["prober"] in listed.output and "model_enumeration" in listed.output
    lifted = CliRunner().invoke(
        cli, ["monitor", "lift", env.ids["prober"], "-c", str(env.config_file)]
    )
    assert lifted.exit_code == 0, lifted.output
    deadline = time.monotonic() + 5
    while env.chat("prober").status_code != 200:
        assert time.monotonic() < deadline, "suspension not lifted"
        time.sleep(0.1)
    kinds = [(a["kind"], a["error_code"], a["key_id"]) for a in env.alerts()]
    assert ("alert", "model_enumeration", env.ids["prober"]) in kinds
    assert ("action", "suspension_lifted", env.ids["prober"]) in kinds


def test_alert_webhook_is_signed_slack_compatible_and_retried(env: Env) -> None:
    deadline = time.monotonic() + 10
    while len(env.receiver.calls) < 3:  # two alerts, the first delivery retried once
        assert time.monotonic() < deadline, env.receiver.calls
        time.sleep(0.05)
    headers, body = env.receiver.calls[0]
    _, retried_body = env.receiver.calls[1]
    assert retried_body == body  # the 500 was retried
    expected = hmac.new(
        SECRET.encode(), headers["x-wardgate-timestamp"].encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    assert headers["x-wardgate-signature"] == f"sha256={expected}"
    import json

    payload = json.loads(body)
    assert payload["text"].startswith("[wardgate] CRITICAL auth_failures on ip 127.0.0.1")
    assert payload["alert"]["evidence"]["count"] == 5
    metrics = httpx.get(env.url + "/metrics").text
    assert 'wardgate_webhook_deliveries_total{result="ok"}' in metrics
