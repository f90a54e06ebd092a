"""The front door as an attacker meets it: a real gateway over HTTP, fake vendors behind it.

One stack serves the security tests (authorisation matrix, failover scope, body handling,
fuzzing). Every model is an OpenAI-protocol fake, so start-up takes a second and no test
waits on inference; the models and keys are chosen so each authorisation path has a name:

* ``cheap`` is dead (its fake answers 503) and falls back to ``premium``;
* ``premium`` and ``mini`` answer;
* the logical model ``auto`` is ``[cheap, mini]``, so its plan passes cheap's fallback
  ``premium`` on the way to ``mini``.

Keys: ``cheap`` / ``premium`` / ``auto`` may use only that name, ``all`` may use every model,
``admin`` is an admin key, and ``expired`` / ``revoked`` are what they say.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import serve_in_thread
from tests.fakes import FakeOpenAI, run_server
from tests.store.conftest import pg_url  # noqa: F401 - a fresh PostgreSQL schema per test

from wardgate.config import GatewayConfig
from wardgate.gateway.app import create_app
from wardgate.gateway.service import Gateway
from wardgate.store.audit import tail

VENDOR_KEY = "sk-fake-vendor-0123456789abcdef"
VENDOR_KEY_ENV = "WG_SECURITY_TEST_VENDOR_KEY"
BODY_LIMIT = 64 * 1024


def front_door_config(tmp: Path, oai_url: str, **overrides: Any) -> GatewayConfig:
    vendor = {"deployment": "vendor", "weights": "closed", "region": "us"}

    def model(name: str, upstream: str, **extra: Any) -> dict[str, Any]:
        return {
            "name": name,
            "backend": "openai",
            "base_url": f"{oai_url}/v1",
            "api_key_env": VENDOR_KEY_ENV,
            "upstream_model": upstream,
            "retries": 0,
            "tags": vendor,
            **extra,
        }

    raw: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp / 'wardgate.db'}",
        "auth": {"secret_file": str(tmp / "secret"), "secret_env": "WG_SECURITY_NO_SUCH_VAR"},
        "server": {"max_body_bytes": BODY_LIMIT},
        "guards": {"input": [], "output": []},
        "models": [
            model("cheap", "fault:status=503", fallbacks=["premium"]),
            model("premium", "gpt-4o"),
            model("mini", "gpt-4o-mini"),
        ],
        "routing": {"logical_models": {"auto": ["cheap", "mini"]}},
        # These tests send hundreds of refused requests from one address on purpose; the
        # monitor would (rightly) block it. Its own tests are in tests/monitor/.
        "monitor": {"enabled": False},
    }
    raw.update(overrides)
    return GatewayConfig.model_validate(raw)


@dataclass
class FrontDoor:
    url: str
    gateway: Gateway
    keys: dict[str, str]
    key_ids: dict[str, str]
    oai: FakeOpenAI

    def headers(self, key: str | None) -> dict[str, str]:
        """Authorization for a named key; ``bad`` is a well-formed key nobody issued."""
        if key is None:
            return {}
        raw = "wg-" + "A" * 43 if key == "bad" else self.keys[key]
        return {"authorization": f"Bearer {raw}"}

    def call(
        self,
        method: str,
        path: str,
        key: str | None = None,
        *,
        json: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        merged = {**self.headers(key), **(headers or {})}
        return httpx.request(
            method, self.url + path, json=json, content=content, headers=merged, timeout=60
        )

    def audit_rows(self) -> list[dict[str, Any]]:
        assert self.gateway.audit.flush()
        return tail(self.gateway.engine, 100_000)

    def last_audit(self) -> dict[str, Any]:
        return self.audit_rows()[-1]


def issue_keys(gateway: Gateway) -> tuple[dict[str, str], dict[str, str]]:
    store = gateway.keys
    specs: dict[str, dict[str, Any]] = {
        "cheap": {"owner": "cheap-app", "models": ["cheap"]},
        "premium": {"owner": "premium-app", "models": ["premium"]},
        "auto": {"owner": "auto-app", "models": ["auto"]},
        "all": {"owner": "all-app"},
        "admin": {"owner": "ops", "admin": True},
        "expired": {"owner": "old", "expires_at": datetime.now(UTC) - timedelta(seconds=1)},
        "revoked": {"owner": "gone"},
    }
    raws: dict[str, str] = {}
    ids: dict[str, str] = {}
    for name, spec in specs.items():
        record, raw = store.create(**spec)
        raws[name], ids[name] = raw, record.id
    store.revoke(ids["revoked"])
    return raws, ids


@pytest.fixture(scope="module")
def front_door(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FrontDoor]:
    tmp = tmp_path_factory.mktemp("front-door")
    oai = FakeOpenAI(api_key=VENDOR_KEY)
    mp = pytest.MonkeyPatch()
    mp.setenv(VENDOR_KEY_ENV, VENDOR_KEY)
    try:
        with run_server(oai.app) as oai_url:
            config = front_door_config(tmp, oai_url)
            gateway = Gateway(config)
            raws, ids = issue_keys(gateway)
            with serve_in_thread(create_app(config, gateway=gateway)) as url:
                yield FrontDoor(url, gateway, raws, ids, oai)
    finally:
        mp.undo()


@pytest.fixture
def gateway_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Everything the gateway logs during a test (tracebacks included).

    uvicorn's loggers do not propagate to the root logger (its logging config says so), and
    "Exception in ASGI application" goes there: the capture is attached to them directly.
    """
    caplog.set_level(logging.DEBUG)
    uvicorn_log = logging.getLogger("uvicorn")
    uvicorn_log.addHandler(caplog.handler)
    try:
        yield caplog
    finally:
        uvicorn_log.removeHandler(caplog.handler)
