"""Monitor, traces and console together against the gateway serving the embedded SmolLM2."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import openai
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tests.conftest import serve_in_thread

from wardgate.config import GatewayConfig
from wardgate.gateway.app import create_app
from wardgate.gateway.service import Gateway
from wardgate.telemetry.config import TelemetryConfig
from wardgate.telemetry.tracing import install


def test_embedded_model_traced_monitored_and_in_the_console(tmp_path: Path) -> None:
    config = GatewayConfig.model_validate(
        {
            "database_url": f"sqlite:///{tmp_path / 'gw.db'}",
            "auth": {"secret_file": str(tmp_path / "secret"), "secret_env": "WG_EMB_NO_SECRET"},
            "models": [
                {"name": "smol", "backend": "llamacpp", "n_ctx": 512, "max_output_tokens": 16}
            ],
            "monitor": {"rules": {"auth_failures": {"threshold": 4, "action_ttl_s": 60}}},
        }
    )
    gateway = Gateway(config)
    exporter = InMemorySpanExporter()
    gateway.tracing = install(gateway, TelemetryConfig(tracing=True), exporter)
    _, key = gateway.keys.create(owner="app")
    _, admin = gateway.keys.create(owner="ops", admin=True)
    with serve_in_thread(create_app(config, gateway=gateway)) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
        answer = client.chat.completions.create(
            model="smol",
            messages=[{"role": "user", "content": "Say hello."}],
            max_tokens=8,
            user="e2e-user",
        )
        assert answer.choices[0].message.content
        attempt = next(s for s in exporter.get_finished_spans() if s.name == "chat smol")
        assert attempt.attributes["gen_ai.provider.name"] == "llama_cpp"
        assert attempt.attributes["gen_ai.usage.output_tokens"] == answer.usage.completion_tokens

        console = httpx.Client(base_url=url)
        page = console.get("/console/login")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        assert console.post("/console/login", data={"csrf": token, "key": admin}).status_code == 303
        gateway.audit.flush()
        audit = console.get("/console/audit", params={"user": "e2e-user"})
        assert "e2e-user" in audit.text and ">smol<" in audit.text

        for _ in range(4):
            assert (
                httpx.post(
                    url + "/v1/chat/completions",
                    json={},
                    headers={"authorization": "Bearer wg-bad"},
                ).status_code
                == 401
            )
        assert gateway.monitor.drain()
        blocked = client.with_options(max_retries=0)
        try:
            blocked.models.list()
            raise AssertionError("the stuffing address was not blocked")
        except openai.RateLimitError as exc:
            assert exc.body["code"] == "ip_blocked"
        assert console.get("/console/alerts").status_code == 429  # the console is a door too
        gateway.monitor.enforcement.unblock_ip("127.0.0.1")
        gateway.audit.flush()
        alerts = console.get("/console/alerts")
        assert "auth_failures" in alerts.text and "127.0.0.1" in alerts.text
