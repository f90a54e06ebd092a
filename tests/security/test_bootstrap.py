"""The first admin key is made once per database and never lands in a log (finding 3).

The outside review: after an incident responder revoked every admin key, a restart minted a
new one and printed it raw to stdout — which under systemd or Docker is a log.
"""

from __future__ import annotations

import logging
import stat
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from wardgate.config import GatewayConfig
from wardgate.gateway.bootstrap import ensure_admin_key
from wardgate.gateway.service import Gateway
from wardgate.store.db import create_engine_for, upgrade_database
from wardgate.store.keys import KeyStore
from wardgate.store.secret import load_or_create_secret


def _config(tmp: Path, db_url: str | None = None) -> GatewayConfig:
    return GatewayConfig.model_validate(
        {
            "database_url": db_url or f"sqlite:///{tmp / 'wardgate.db'}",
            "auth": {"secret_file": str(tmp / "state" / "secret"), "secret_env": "WG_NO_VAR"},
            "guards": {"input": [], "output": []},
        }
    )


def _admins(gateway: Gateway) -> list:
    return [k for k in gateway.keys.list(include_revoked=True) if k.admin]


def test_non_tty_start_writes_the_key_to_a_0600_file_and_logs_only_its_path(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    gateway = Gateway(_config(tmp_path))
    printed: list[str] = []
    try:
        raw = ensure_admin_key(gateway, echo=printed.append, interactive=False)
        assert raw is not None
        assert printed == []
        key_file = tmp_path / "state" / "admin-key"
        assert key_file.read_text().strip() == raw
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert str(key_file) in caplog.text
        assert raw not in caplog.text
        assert gateway.keys.verify(raw).admin  # type: ignore[union-attr]
    finally:
        gateway.engine.dispose()


def test_revoking_every_admin_key_and_restarting_mints_none(tmp_path: Path) -> None:
    config = _config(tmp_path)
    first = Gateway(config)
    printed: list[str] = []
    raw = ensure_admin_key(first, echo=printed.append, interactive=True)
    assert raw is not None and any(raw in p for p in printed)  # a terminal sees it once
    for key in _admins(first):
        first.keys.revoke(key.id)
    first.engine.dispose()

    restarted = Gateway(config)
    try:
        assert ensure_admin_key(restarted, echo=printed.append, interactive=True) is None
        assert ensure_admin_key(restarted, echo=printed.append, interactive=False) is None
        assert len(printed) == 1
        assert [k.status() for k in _admins(restarted)] == ["revoked"]
        # The explicit way still works.
        result = CliRunner().invoke(
            __import__("wardgate.cli.keys", fromlist=["keys_app"]).keys_app,
            ["create", "--owner", "ir", "--admin", "-c", str(_write(config, tmp_path))],
        )
        assert result.exit_code == 0, result.output
        assert len([k for k in _admins(restarted) if k.is_active()]) == 1
    finally:
        restarted.engine.dispose()


def test_an_operators_own_admin_key_counts_as_the_first(tmp_path: Path) -> None:
    gateway = Gateway(_config(tmp_path))
    try:
        gateway.keys.create(owner="ops", admin=True)
        assert ensure_admin_key(gateway, echo=print, interactive=False) is None
        assert len(_admins(gateway)) == 1
    finally:
        gateway.engine.dispose()


def test_databases_from_before_the_mark_are_treated_as_bootstrapped(tmp_path: Path) -> None:
    """Migration 0003 marks a database that already had an admin key (here, all revoked)."""
    config = _config(tmp_path)
    url = config.database_url
    upgrade_database(url, "0002")
    engine = create_engine_for(url)
    store = KeyStore(engine, load_or_create_secret(config.auth))
    record, _ = store._insert(
        {
            "owner": "old-admin",
            "models": ["*"],
            "tier": "admin",
            "rpm": None,
            "tpm": None,
            "expires_at": None,
            "admin": True,
            "rotated_from": None,
        }
    )
    # Revoked with SQL of that schema: today's KeyStore reads columns added after 0002.
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE wardgate_api_keys SET revoked_at = created_at WHERE id = :id"),
            {"id": record.id},
        )
    with engine.connect() as conn:
        names = conn.execute(sa.text("SELECT name FROM wardgate_meta")).scalars().all()
    assert "admin_bootstrapped" not in names
    engine.dispose()
    gateway = Gateway(config)  # migrates to head
    try:
        assert ensure_admin_key(gateway, echo=print, interactive=False) is None
        assert [k.status() for k in _admins(gateway)] == ["revoked"]
    finally:
        gateway.engine.dispose()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_concurrent_first_starts_make_one_admin_key(
    request: pytest.FixtureRequest, tmp_path: Path, database: str
) -> None:
    url = None if database == "sqlite" else request.getfixturevalue("pg_url")
    config = _config(tmp_path, url)
    gateways = [Gateway(config) for _ in range(4)]
    made: list[str | None] = []
    barrier = threading.Barrier(len(gateways))

    def start(gateway: Gateway) -> None:
        barrier.wait()
        made.append(ensure_admin_key(gateway, echo=lambda _: None, interactive=False))

    threads = [threading.Thread(target=start, args=(g,)) for g in gateways]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert len([m for m in made if m]) == 1
        assert len(_admins(gateways[0])) == 1
    finally:
        for gateway in gateways:
            gateway.engine.dispose()


def _write(config: GatewayConfig, tmp: Path) -> Path:
    import yaml

    path = tmp / "wardgate.yaml"
    path.write_text(
        yaml.safe_dump({"database_url": config.database_url, "auth": config.auth.model_dump()})
    )
    return path
