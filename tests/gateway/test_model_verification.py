"""The gateway verifies local weights before loading them, and refuses to start otherwise."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from wardgate.config import GatewayConfig
from wardgate.embedded import embedded_model_path
from wardgate.errors import ModelVerificationFailed
from wardgate.gateway.service import Gateway


def _config(tmp: Path, verify: dict[str, object]) -> dict[str, object]:
    return {
        "database_url": f"sqlite:///{tmp / 'gw.db'}",
        "auth": {"secret_file": str(tmp / "secret"), "secret_env": "WG_VERIFY_NO_SECRET"},
        "server": {"port": 0},
        "guards": {"input": [], "output": []},
        "models": [{"name": "smol", "backend": "llamacpp", "n_ctx": 256, "verify": verify}],
    }


async def test_pinned_digest_loads_and_a_wrong_one_refuses(tmp_path: Path) -> None:
    digest = hashlib.sha256(embedded_model_path().read_bytes()).hexdigest()
    good = Gateway(GatewayConfig.model_validate(_config(tmp_path / "a", {"sha256": digest})))
    await good.start()
    assert good.ready
    await good.stop()

    wrong = "0" * 64
    bad = Gateway(GatewayConfig.model_validate(_config(tmp_path / "b", {"sha256": wrong})))
    with pytest.raises(ModelVerificationFailed) as info:
        await bad.start()
    assert "sha256" in info.value.message.lower() or "digest" in info.value.message.lower()
    assert not bad.ready
    await bad.stop()


def test_serve_refuses_an_unsigned_model_when_a_signature_is_required(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(_config(tmp_path, {"require_signature": True})))
    proc = subprocess.run(
        [sys.executable, "-m", "wardgate.cli.main", "serve", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "cannot start" in proc.stderr and "signature" in proc.stderr
