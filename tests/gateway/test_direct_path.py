"""The chat path's shortcuts keep its behaviour: the direct dispatch of the API endpoints,
and streamed answers whose upstream events arrive several to a network read."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from joserfc.jwk import KeySet
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route
from tests.conftest import serve_in_thread
from tests.fakes import run_server

from wardgate.config import GatewayConfig
from wardgate.gateway import app as app_module
from wardgate.gateway.app import create_app
from wardgate.gateway.service import Gateway
from wardgate.provenance.receipts import verify_receipt
from wardgate.store.auditlog import tail

pytestmark = pytest.mark.timeout(60)


def _event(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
    choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish, **extra}
    return b"data: " + orjson.dumps({"choices": [choice]}) + b"\n\n"


WORDS = [f"w{i} " for i in range(12)]
#: A whole answer in one write: the events reach the gateway in one read (or a few).
ONE_WRITE = b"".join(
    [
        _event({"role": "assistant", "content": ""}),
        *(_event({"content": word}) for word in WORDS),
        _event({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                "function": {"name": "lookup", "arguments": ""}}]}),
        _event({"tool_calls": [{"index": 0, "function": {"arguments": '{"q": '}}]}),
        _event({"tool_calls": [{"index": 0, "function": {"arguments": '"x"}'}}]}),
        _event({}, "stop", stop_reason="END"),
        b'data: {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 12}}\n\n',
        b"data: [DONE]\n\n",
    ]
)  # fmt: skip


async def _one_write(request: Request) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        yield ONE_WRITE

    return StreamingResponse(body(), media_type="text/event-stream")


async def _first_then_stall(request: Request) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        yield _event({"role": "assistant", "content": ""}) + _event({"content": "first "})
        await asyncio.sleep(60)  # the client leaves long before this

    return StreamingResponse(body(), media_type="text/event-stream")


@dataclass
class Env:
    url: str
    gateway: Gateway
    key: str

    def post(self, path: str, body: Any, **kwargs: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {self.key}"}
        return httpx.post(self.url + path, json=body, headers=headers, timeout=30, **kwargs)

    def audit(self, request_id: str) -> dict[str, Any]:
        assert self.gateway.audit.flush()
        return next(r for r in tail(self.gateway.engine, 50) if r["request_id"] == request_id)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp: Path = tmp_path_factory.mktemp("direct")
    upstream_app = Starlette(
        routes=[
            Route("/v1/chat/completions", _one_write, methods=["POST"]),
            Route("/stall/v1/chat/completions", _first_then_stall, methods=["POST"]),
        ]
    )
    mp = pytest.MonkeyPatch()
    mp.setenv("WG_DIRECT_KEY", "sk-direct")
    with run_server(upstream_app) as upstream:
        config = GatewayConfig.model_validate(
            {
                "database_url": f"sqlite:///{tmp / 'gw.db'}",
                "auth": {"secret_file": str(tmp / "secret"), "secret_env": "WG_DIRECT_NONE"},
                "guards": {"input": [], "output": []},
                "models": [
                    {
                        "name": "batched",
                        "backend": "openai",
                        "base_url": f"{upstream}/v1",
                        "api_key_env": "WG_DIRECT_KEY",
                        "retries": 0,
                        "tags": {"deployment": "on_prem"},
                    },
                    {
                        "name": "stalling",
                        "backend": "openai",
                        "base_url": f"{upstream}/stall/v1",
                        "api_key_env": "WG_DIRECT_KEY",
                        "retries": 0,
                        "tags": {"deployment": "on_prem"},
                    },
                ],
            }
        )
        gateway = Gateway(config)
        _, key = gateway.keys.create(owner="direct")
        with serve_in_thread(create_app(config, gateway=gateway)) as url:
            yield Env(url, gateway, key)
    mp.undo()


def _chunks(text: str) -> list[Any]:
    lines = [line.removeprefix("data: ") for line in text.split("\n\n") if line]
    assert lines[-1] == "[DONE]"
    return [orjson.loads(line) for line in lines[:-1]]


@pytest.mark.parametrize("include_usage", [True, False])
def test_events_of_one_upstream_read_reach_the_client_intact_and_in_order(
    env: Env, include_usage: bool
) -> None:
    body: dict[str, Any] = {
        "model": "batched",
        "stream": True,
        "stop": ["END"],
        "messages": [{"role": "user", "content": "go"}],
    }
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    reply = env.post("/v1/chat/completions", body)
    assert reply.status_code == 200
    chunks = _chunks(reply.text)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    # One content event per upstream content event, in order: nothing merged or lost.
    assert [d["content"] for d in deltas if d.get("content")] == WORDS
    calls = [d["tool_calls"] for d in deltas if "tool_calls" in d]
    assert calls, "the held tool call is replayed"
    arguments = "".join(f["function"].get("arguments", "") for group in calls for f in group)
    assert arguments == '{"q": "x"}'
    finish = next(c["choices"][0] for c in chunks if c["choices"] and
                  c["choices"][0]["finish_reason"])  # fmt: skip
    assert (finish["finish_reason"], finish["stop_reason"]) == ("stop", "END")
    last = chunks[-1]
    if include_usage:
        assert last["choices"] == []
        assert last["usage"]["prompt_tokens"] == 7
    else:
        assert last["choices"][0]["finish_reason"] == "stop"
    receipt = last["wardgate"]["receipt"]
    jwks = httpx.get(env.url + "/.well-known/wardgate/keys", timeout=10).json()
    checked = verify_receipt(receipt, KeySet.import_key_set(jwks), content="".join(WORDS))
    assert checked.content_matches
    record = env.audit(chunks[0]["id"])
    assert (record["status"], record["stream"], record["receipt"]) == (200, True, receipt)
    assert record["backend_used"] == "batched"


def test_other_methods_on_an_api_path_still_get_the_routers_answer(env: Env) -> None:
    reply = httpx.get(env.url + "/v1/chat/completions", timeout=10)
    assert reply.status_code == 405
    assert reply.json()["error"]["type"]
    assert "POST" in reply.headers["allow"]


def test_an_unexpected_error_on_the_direct_path_is_answered_like_any_other(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(request: Request) -> Any:
        raise RuntimeError("a bug with secret request content")

    monkeypatch.setitem(app_module.DIRECT_ROUTES, "/v1/embeddings", broken)
    reply = env.post("/v1/embeddings", {"model": "batched", "input": "x"})
    assert reply.status_code == 500
    error = reply.json()["error"]
    assert error["message"] == "internal error"
    assert "secret" not in reply.text


def test_a_client_that_leaves_mid_stream_is_audited_as_gone(env: Env) -> None:
    body = {"model": "stalling", "stream": True, "messages": [{"role": "user", "content": "go"}]}
    headers = {"authorization": f"Bearer {env.key}"}
    with httpx.stream(
        "POST", env.url + "/v1/chat/completions", json=body, headers=headers, timeout=30
    ) as reply:
        assert reply.status_code == 200
        first = next(reply.iter_bytes())
    request_id = orjson.loads(first.split(b"\n\n")[0].removeprefix(b"data: "))["id"]
    deadline = time.monotonic() + 30
    while True:
        assert env.gateway.audit.flush()
        found = [r for r in tail(env.gateway.engine, 50) if r["request_id"] == request_id]
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert found, "the stream was not stopped when the client left"
    assert (found[0]["status"], found[0]["error_code"]) == (499, "client_disconnected")


def test_a_stream_without_output_guards_skips_the_scanner(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No output guard configured: the deltas go out as they came, and no scanner (with its
    per-chunk work) is made for the answer."""
    assert env.gateway.guards.output_guards() == []

    def no_scanner(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("an output scanner was made for a route without output guards")

    monkeypatch.setattr(env.gateway.guards, "output_scanner", no_scanner)
    body = {"model": "batched", "stream": True, "messages": [{"role": "user", "content": "go"}]}
    reply = env.post("/v1/chat/completions", body)
    assert reply.status_code == 200
    chunks = _chunks(reply.text)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert [d["content"] for d in deltas if d.get("content")] == WORDS
    record = env.audit(chunks[0]["id"])
    assert (record["status"], record["guard_decisions"]) == (200, [])


@pytest.mark.parametrize("mode", ["none", "sha256", "full"])
def test_the_audit_prompt_follows_store_prompts(
    env: Env, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """The prompt text is built only when the log keeps it; what is stored is unchanged."""
    import hashlib

    monkeypatch.setattr(env.gateway.config.audit, "store_prompts", mode)
    body = {"model": "batched", "stream": True, "messages": [{"role": "user", "content": "go"}]}
    reply = env.post("/v1/chat/completions", body)
    assert reply.status_code == 200
    record = env.audit(_chunks(reply.text)[0]["id"])
    prompt = orjson.dumps([{"role": "user", "content": "go"}]).decode()
    expected = {"none": None, "sha256": hashlib.sha256(prompt.encode()).hexdigest(), "full": prompt}
    assert record["prompt"] == expected[mode] and record["content_mode"] == mode
