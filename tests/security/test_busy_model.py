"""Finding 11 end to end: a busy local model behind the gateway, 24 clients at once.

Over real HTTP, through auth, limits, routing, failover and the audit log, to the real
llamacpp backend whose model sleeps per token (``tests/fakes/llama.py``): every client gets
an answer or a 503 ``overloaded`` with ``Retry-After`` within seconds, none gets
``circuit_open``, and the breaker stays closed. Before the fix, queued requests timed out
after ``timeout_s``, counted as failures and opened the breaker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tests.conftest import serve_in_thread
from tests.fakes.llama import slow_llama

from wardgate.config import GatewayConfig
from wardgate.gateway.app import create_app
from wardgate.gateway.service import Gateway
from wardgate.store.audit import tail

TIMEOUT_S = 8.0
QUEUE_WAIT_S = 1.5


@pytest.fixture(scope="module")
def busy_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Gateway, str]]:
    tmp = tmp_path_factory.mktemp("busy")
    mp = pytest.MonkeyPatch()
    # 0.6 s per answer, one at a time: 17 queued answers would take ~10 s > timeout_s.
    mp.setattr("llama_cpp.Llama", slow_llama(seconds_per_token=0.06, tokens=10))
    config = GatewayConfig.model_validate(
        {
            "database_url": f"sqlite:///{tmp / 'wardgate.db'}",
            "auth": {"secret_file": str(tmp / "secret"), "secret_env": "WG_BUSY_NO_SUCH_VAR"},
            "guards": {"input": [], "output": []},
            "rate_limits": {"default_rpm": 0, "default_tpm": 0},
            "models": [
                {
                    "name": "local",
                    "backend": "llamacpp",
                    "queue_size": 16,
                    "queue_wait_s": QUEUE_WAIT_S,
                    "timeout_s": TIMEOUT_S,
                }
            ],
        }
    )
    try:
        gateway = Gateway(config)
        _record, raw = gateway.keys.create(owner="busy-test")
        with serve_in_thread(create_app(config, gateway=gateway)) as url:
            yield url, gateway, raw
    finally:
        mp.undo()


async def _ask(client: httpx.AsyncClient, stream: bool) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    body: dict[str, Any] = {
        "model": "local",
        "messages": [{"role": "user", "content": "hello"}],
        "stream": stream,
    }
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        await response.aread()
    return response, time.monotonic() - started


def test_24_clients_get_an_answer_or_a_quick_503_and_the_breaker_stays_closed(
    busy_gateway: tuple[str, Gateway, str],
) -> None:
    url, gateway, key = busy_gateway
    before = len(tail(gateway.engine, 100_000))

    async def run() -> list[tuple[httpx.Response, float]]:
        headers = {"authorization": f"Bearer {key}"}
        limits = httpx.Limits(max_connections=32)
        async with httpx.AsyncClient(
            base_url=url, headers=headers, timeout=60, limits=limits
        ) as client:
            return await asyncio.gather(*(_ask(client, i % 3 == 0) for i in range(24)))

    results = asyncio.run(run())
    statuses = [r.status_code for r, _ in results]
    assert set(statuses) <= {200, 503}, statuses
    assert 200 in statuses and 503 in statuses
    for response, _ in results:
        if response.status_code == 503:
            assert response.json()["error"]["code"] == "overloaded"
            assert int(response.headers["retry-after"]) >= 1
    # Nobody waited for timeout_s: a turn is waited for 1.5 s, an answer takes 0.6 s.
    assert max(seconds for _, seconds in results) < TIMEOUT_S
    assert gateway.failover.circuit_states() == {"local": "closed"}
    assert gateway.failover.breaker("local").consecutive_failures == 0

    assert gateway.audit.flush()
    rows = tail(gateway.engine, 100_000)[before:]
    assert len(rows) == 24
    assert {row["error_code"] for row in rows} <= {None, "overloaded"}
    again = httpx.post(
        f"{url}/v1/chat/completions",
        json={"model": "local", "messages": [{"role": "user", "content": "again"}]},
        headers={"authorization": f"Bearer {key}"},
        timeout=60,
    )
    assert again.status_code == 200
