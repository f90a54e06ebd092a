"""A real gateway on a free port for the SDK end-to-end tests.

Every e2e module needs the same scaffolding — a throwaway SQLite store and auth secret, vendor
keys in the environment, a `Gateway` served by uvicorn in a thread, the newest audit record —
and only the models, guards and keys differ. This module is that scaffolding, once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import serve_in_thread

from wardgate.config import GatewayConfig
from wardgate.gateway.app import create_app
from wardgate.gateway.service import Gateway
from wardgate.store.audit import tail


class RunningGateway:
    """A served gateway: its base URL, the `Gateway` behind it, and its audit trail."""

    def __init__(self, url: str, gateway: Gateway) -> None:
        self.url, self.gateway = url, gateway

    def create_key(self, owner: str, **options: Any) -> str:
        """A new client key (the raw value, shown once as in `wardgate keys create`)."""
        return self.gateway.keys.create(owner=owner, **options)[1]

    def last_audit(self) -> dict[str, Any]:
        """The newest audit record, after flushing the batched writer."""
        assert self.gateway.audit.flush()
        return tail(self.gateway.engine, 1)[0]


def vendor_model(
    name: str, backend: str, url: str, key_env: str, *, deployment: str = "vendor"
) -> dict[str, Any]:
    """A model entry pointing at a local vendor-protocol fake (no retries, deployment stated)."""
    base_url = f"{url}/v1" if backend == "openai" else url
    return {
        "name": name,
        "backend": backend,
        "base_url": base_url,
        "api_key_env": key_env,
        "retries": 0,
        "tags": {"deployment": deployment},
    }


@contextmanager
def running_gateway(
    tmp: Path, config: dict[str, Any], *, env: dict[str, str] | None = None
) -> Iterator[RunningGateway]:
    """Serve a gateway built from `config` (store and auth secret under `tmp` are added).

    `env` sets variables (vendor keys) for the gateway's lifetime and restores them after.
    """
    with pytest.MonkeyPatch.context() as mp:
        for name, value in (env or {}).items():
            mp.setenv(name, value)
        validated = GatewayConfig.model_validate(
            {
                "database_url": f"sqlite:///{tmp / 'gw.db'}",
                "auth": {"secret_file": str(tmp / "secret"), "secret_env": "WG_TEST_NO_SECRET"},
                **config,
            }
        )
        gateway = Gateway(validated)
        with serve_in_thread(create_app(validated, gateway=gateway)) as url:
            yield RunningGateway(url, gateway)
