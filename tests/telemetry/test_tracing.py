"""Traces through the running gateway: the span tree, GenAI attributes, no content or keys,
OTLP export to a real HTTP receiver, JSON logs, and nothing imported when tracing is off."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tests.conftest import serve_in_thread
from tests.fakes import FakeOpenAI, run_server

from wardgate.config import GatewayConfig
from wardgate.gateway.app import create_app
from wardgate.gateway.service import Gateway
from wardgate.telemetry.config import TelemetryConfig
from wardgate.telemetry.logs import JsonFormatter
from wardgate.telemetry.tracing import install

PROMPT = "the quarterly numbers are purple-giraffe-981"


@dataclass
class Env:
    url: str
    gateway: Gateway
    exporter: InMemorySpanExporter
    key: str


def _config(tmp: Path, upstream: str, **extra: object) -> GatewayConfig:
    return GatewayConfig.model_validate(
        {
            "database_url": f"sqlite:///{tmp / 'gw.db'}",
            "auth": {"secret_file": str(tmp / "secret"), "secret_env": "WG_TRACE_NO_SECRET"},
            "guards": {"input": [{"type": "invisible_unicode"}], "output": []},
            "models": [
                {
                    "name": "flaky",
                    "backend": "openai",
                    "base_url": "http://127.0.0.1:9/v1",
                    "api_key_env": "WG_TRACE_KEY",
                    "retries": 0,
                    "connect_timeout_s": 0.5,
                    "fallbacks": ["echo"],
                    "tags": {"deployment": "on_prem"},
                },
                {
                    "name": "echo",
                    "backend": "openai",
                    "base_url": f"{upstream}/v1",
                    "api_key_env": "WG_TRACE_KEY",
                    "retries": 0,
                    "upstream_model": "fake-echo",
                    "tags": {"deployment": "on_prem"},
                },
            ],
            **extra,
        }
    )


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("trace")
    fake = FakeOpenAI(api_key="sk-trace")
    mp = pytest.MonkeyPatch()
    mp.setenv("WG_TRACE_KEY", "sk-trace")
    with run_server(fake.app) as upstream:
        config = _config(tmp, upstream)
        gateway = Gateway(config)
        exporter = InMemorySpanExporter()
        gateway.tracing = install(gateway, TelemetryConfig(tracing=True), exporter)
        _, key = gateway.keys.create(owner="tracer")
        with serve_in_thread(create_app(config, gateway=gateway)) as url:
            yield Env(url, gateway, exporter, key)
    mp.undo()


def _spans(env: Env, name_prefix: str = "POST /v1/chat") -> list:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        spans = env.exporter.get_finished_spans()
        if any(s.name.startswith(name_prefix) for s in spans):
            return list(spans)
        time.sleep(0.02)
    raise AssertionError([s.name for s in env.exporter.get_finished_spans()])


def test_one_trace_per_request_with_every_stage_and_each_upstream_attempt(env: Env) -> None:
    env.exporter.clear()
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    response = httpx.post(
        f"{env.url}/v1/chat/completions",
        headers={"authorization": f"Bearer {env.key}", "traceparent": parent},
        json={
            "model": "flaky",
            "messages": [{"role": "user", "content": PROMPT}],
            "max_tokens": 20,
            "temperature": 0.5,
        },
        timeout=30,
    )
    assert response.status_code == 200
    spans = _spans(env)
    by_name = {}
    for s in spans:
        by_name.setdefault(s.name, []).append(s)
    root = by_name["POST /v1/chat/completions"][0]
    assert f"{root.context.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"  # caller's trace
    assert root.attributes["http.response.status_code"] == 200
    for name in (
        "wardgate.auth",
        "wardgate.guards.input",
        "wardgate.routing",
        "wardgate.guards.output",
        "wardgate.audit",
    ):
        assert by_name[name][0].parent.span_id == root.context.span_id, name
    attempts = by_name["chat flaky"] + by_name["chat fake-echo"]
    assert [a.status.status_code.name for a in attempts] == ["ERROR", "UNSET"]  # failover
    ok = by_name["chat fake-echo"][0]
    assert ok.parent.span_id == root.context.span_id
    assert ok.attributes["gen_ai.operation.name"] == "chat"
    assert ok.attributes["gen_ai.provider.name"] == "openai"
    assert ok.attributes["gen_ai.request.model"] == "fake-echo"
    assert ok.attributes["gen_ai.request.max_tokens"] == 20
    assert ok.attributes["gen_ai.request.temperature"] == 0.5
    assert ok.attributes["gen_ai.usage.input_tokens"] > 0
    assert ok.attributes["gen_ai.usage.output_tokens"] > 0
    assert by_name["wardgate.auth"][0].attributes["wardgate.key_id"].startswith("key_")
    everything = json.dumps([dict(s.attributes or {}) for s in spans] + [s.name for s in spans])
    assert "purple-giraffe" not in everything  # no prompt
    assert "Echo" not in everything  # no answer
    assert env.key not in everything and env.key[:10] not in everything  # no key


def test_a_refused_request_still_leaves_a_trace(env: Env) -> None:
    env.exporter.clear()
    assert (
        httpx.post(
            f"{env.url}/v1/chat/completions",
            json={"model": "echo"},
            headers={"authorization": "Bearer wg-nope"},
        ).status_code
        == 401
    )
    spans = _spans(env)
    auth = next(s for s in spans if s.name == "wardgate.auth")
    assert auth.status.status_code.name == "ERROR"
    assert auth.attributes["error.type"] == "invalid_api_key"


def test_streams_are_traced_to_their_end(env: Env) -> None:
    env.exporter.clear()
    with httpx.stream(
        "POST",
        f"{env.url}/v1/chat/completions",
        headers={"authorization": f"Bearer {env.key}"},
        json={
            "model": "echo",
            "stream": True,
            "messages": [{"role": "user", "content": "one two three"}],
        },
    ) as r:
        assert r.status_code == 200
        body = "".join(r.iter_text())
    assert "[DONE]" in body
    spans = _spans(env)
    attempt = next(s for s in spans if s.name == "chat fake-echo")
    assert attempt.attributes["wardgate.stream"] is True
    assert attempt.attributes["gen_ai.response.finish_reasons"] == ("stop",)


class OtlpReceiver:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.app = Starlette(routes=[Route("/v1/traces", self.traces, methods=["POST"])])

    async def traces(self, request: Request) -> Response:
        self.bodies.append(await request.body())
        return Response(b"", media_type="application/x-protobuf")


def test_otlp_export_reaches_a_collector(tmp_path: Path, monkeypatch) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    fake = FakeOpenAI(api_key="sk-trace")
    receiver = OtlpReceiver()
    monkeypatch.setenv("WG_TRACE_KEY", "sk-trace")
    with run_server(fake.app) as upstream, run_server(receiver.app) as collector:
        config = _config(
            tmp_path,
            upstream,
            telemetry={
                "tracing": True,
                "otlp_endpoint": f"{collector}/v1/traces",
                "service_name": "wg-t",
            },
        )
        gateway = Gateway(config)
        _, key = gateway.keys.create(owner="otlp")
        with serve_in_thread(create_app(config, gateway=gateway)) as url:
            r = httpx.post(
                f"{url}/v1/chat/completions",
                headers={"authorization": f"Bearer {key}"},
                json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]},
            )
            assert r.status_code == 200
        # Stopping the gateway flushes the batch processor.
    assert receiver.bodies
    names = set()
    for body in receiver.bodies:
        request = ExportTraceServiceRequest.FromString(body)
        for rs in request.resource_spans:
            service = {a.key: a.value.string_value for a in rs.resource.attributes}
            assert service["service.name"] == "wg-t"
            for ss in rs.scope_spans:
                names |= {s.name for s in ss.spans}
    assert {"POST /v1/chat/completions", "chat fake-echo", "wardgate.auth"} <= names


def test_tracing_off_wraps_and_imports_nothing(tmp_path: Path) -> None:
    code = f"""
import sys
from wardgate.config import GatewayConfig
from wardgate.gateway.app import create_app
from wardgate.gateway.service import Gateway
cfg = GatewayConfig.model_validate({{"database_url": "sqlite:///{tmp_path / "x.db"}",
    "auth": {{"secret_file": "{tmp_path / "s"}", "secret_env": "WG_NO"}}, "models": [],
    "guards": {{"input": [], "output": []}}}})
gw = Gateway(cfg)
create_app(cfg, gateway=gw)
assert gw.tracing is None
assert type(gw.auth).authenticate is not None and "authenticate" not in vars(gw.auth)
# (redis-py itself may import the OpenTelemetry API when it is installed; ours stays out.)
print(sorted(m for m in sys.modules if m.startswith(("wardgate.telemetry.tracing",
                                                      "opentelemetry.exporter",
                                                      "opentelemetry.sdk.trace"))))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_json_log_lines() -> None:
    record = logging.makeLogRecord(
        {
            "name": "wardgate.x",
            "levelname": "WARNING",
            "msg": "audit queue full: %d dropped",
            "args": (3,),
            "request_id": "chatcmpl-1",
        }
    )
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "warning" and line["logger"] == "wardgate.x"
    assert line["message"] == "audit queue full: 3 dropped"
    assert line["request_id"] == "chatcmpl-1" and line["ts"].endswith("+00:00")
