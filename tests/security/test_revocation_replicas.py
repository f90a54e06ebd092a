"""A revoked key stops working on every replica at once when they share Redis (finding 8).

The outside review: revocation reached other replicas only when their key cache expired
(2 s; 29 requests were served after the revoke).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest
import yaml
from tests.conftest import serve_in_thread
from typer.testing import CliRunner

from wardgate.cli.keys import keys_app
from wardgate.config import GatewayConfig
from wardgate.gateway.app import create_app
from wardgate.gateway.service import Gateway

REDIS_URL = "redis://127.0.0.1:6379/0"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config(tmp: Path, redis_url: str | None, ttl_s: float) -> GatewayConfig:
    return GatewayConfig.model_validate(
        {
            "database_url": f"sqlite:///{tmp / 'shared.db'}",
            "redis_url": redis_url,
            "auth": {
                "secret_file": str(tmp / "secret"),
                "secret_env": "WG_NO_SUCH_VAR",
                "key_cache_ttl_s": ttl_s,
            },
            "guards": {"input": [], "output": []},
        }
    )


@contextmanager
def _replicas(tmp: Path, redis_url: str | None, ttl_s: float) -> Iterator[list]:
    config = _config(tmp, redis_url, ttl_s)
    with ExitStack() as stack:
        replicas = []
        for _ in range(2):
            gateway = Gateway(config)
            url = stack.enter_context(serve_in_thread(create_app(config, gateway=gateway)))
            replicas.append((url, gateway))
        yield replicas


def _models(url: str, key: str) -> int:
    return httpx.get(url + "/v1/models", headers={"authorization": f"Bearer {key}"}).status_code


def _until_refused(url: str, key: str, within_s: float) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < within_s:
        if _models(url, key) == 401:
            return time.monotonic() - started
        time.sleep(0.02)
    return None


def _wait_subscribed(gateway: Gateway) -> None:
    events = getattr(gateway, "key_events", None)  # (so the test also runs, and fails, on main)
    deadline = time.monotonic() + 20
    while events is not None and not events.subscribed.is_set():
        assert time.monotonic() < deadline, "never subscribed to Redis"
        time.sleep(0.02)


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[list]:
    # A long cache TTL: only the pub/sub message can explain a fast refusal.
    with _replicas(tmp_path, REDIS_URL, ttl_s=120) as replicas:
        yield replicas


def test_admin_revoke_on_one_replica_reaches_the_other_at_once(shared: list) -> None:
    (url_a, gw_a), (url_b, gw_b) = shared
    for gateway in (gw_a, gw_b):
        _wait_subscribed(gateway)
    admin = gw_a.keys.create(owner="ops", admin=True)[1]
    record, key = gw_a.keys.create(owner="app")
    assert _models(url_b, key) == 200  # now cached on B for 120 s
    revoked = httpx.post(
        f"{url_a}/admin/keys/{record.id}/revoke", headers={"authorization": f"Bearer {admin}"}
    )
    assert revoked.status_code == 200
    assert _models(url_a, key) == 401
    assert _until_refused(url_b, key, within_s=10) is not None


def test_cli_revoke_reaches_running_replicas(shared: list, tmp_path: Path) -> None:
    (url_a, gw_a), (url_b, gw_b) = shared
    for gateway in (gw_a, gw_b):
        _wait_subscribed(gateway)
    record, key = gw_a.keys.create(owner="app")
    assert _models(url_a, key) == 200 and _models(url_b, key) == 200
    config_file = tmp_path / "wardgate.yaml"
    config = gw_a.config
    config_file.write_text(
        yaml.safe_dump(
            {
                "database_url": config.database_url,
                "redis_url": config.redis_url,
                "auth": config.auth.model_dump(),
            }
        )
    )
    result = CliRunner().invoke(keys_app, ["revoke", record.id, "-c", str(config_file)])
    assert result.exit_code == 0, result.output
    for url in (url_a, url_b):
        assert _until_refused(url, key, within_s=10) is not None


def test_without_redis_the_cache_ttl_is_the_bound(tmp_path: Path) -> None:
    dead = f"redis://127.0.0.1:{_closed_port()}/0"
    with _replicas(tmp_path, dead, 1.0) as ((url_a, gw_a), (url_b, _gw_b)):
        admin = gw_a.keys.create(owner="ops", admin=True)[1]
        record, key = gw_a.keys.create(owner="app")
        assert _models(url_b, key) == 200
        revoked = httpx.post(
            f"{url_a}/admin/keys/{record.id}/revoke",
            headers={"authorization": f"Bearer {admin}"},
        )
        assert revoked.status_code == 200  # Redis being down does not stop a revocation
        assert _models(url_a, key) == 401
        assert _until_refused(url_b, key, within_s=15) is not None
