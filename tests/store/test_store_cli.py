"""``wardgate keys`` and ``wardgate audit`` through Typer's runner, on a real SQLite file."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import orjson
import pytest
import sqlalchemy as sa
import yaml
from typer.testing import CliRunner

from wardgate.cli.audit import audit_app
from wardgate.cli.keys import keys_app, parse_expiry
from wardgate.config import load_config
from wardgate.store.audit import AuditRecord, append_records
from wardgate.store.db import open_database
from wardgate.store.keys import KeyStore
from wardgate.store.secret import load_or_create_secret

runner = CliRunner()


@pytest.fixture
def config_file(tmp_path, monkeypatch):
    monkeypatch.delenv("WG_CLI_TEST_SECRET", raising=False)
    path = tmp_path / "wardgate.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "database_url": f"sqlite:///{tmp_path / 'state' / 'wardgate.db'}",
                "auth": {
                    "secret_env": "WG_CLI_TEST_SECRET",
                    "secret_file": str(tmp_path / "state" / "secret"),
                },
            }
        )
    )
    return path


def _run(app, *args: str):
    result = runner.invoke(app, [str(a) for a in args])
    return result


def _store(config_file) -> KeyStore:
    config = load_config(config_file)
    return KeyStore(open_database(config.database_url), load_or_create_secret(config.auth))


def test_create_prints_the_key_once_and_it_verifies(config_file) -> None:
    result = _run(
        keys_app,
        "create",
        "--owner",
        "app1",
        "-m",
        "m1",
        "-m",
        "m2",
        "--rpm",
        "60",
        "--expires",
        "30d",
        "--config",
        config_file,
    )
    assert result.exit_code == 0, result.output
    raw = next(w for w in result.output.split() if w.startswith("wg-") and len(w) == 46)
    record = _store(config_file).verify(raw)
    assert record is not None and record.owner == "app1" and record.models == ("m1", "m2")
    assert record.rpm == 60 and record.expires_at > datetime.now(UTC) + timedelta(days=29)

    listing = _run(keys_app, "list", "--config", config_file)
    assert listing.exit_code == 0 and record.id in listing.output and "m1,m2" in listing.output
    assert raw not in listing.output and record.display in listing.output


def test_json_create_list_revoke_rotate(config_file) -> None:
    created = orjson.loads(
        _run(keys_app, "create", "-o", "svc", "--admin", "--json", "-c", config_file).output
    )
    assert created["admin"] is True and created["key"].startswith(created["prefix"])
    rotated = orjson.loads(
        _run(keys_app, "rotate", created["prefix"], "--json", "-c", config_file).output
    )
    assert rotated["rotated_from"] == created["id"] and rotated["key"] != created["key"]
    listed = orjson.loads(_run(keys_app, "list", "--json", "-c", config_file).output)
    assert [k["id"] for k in listed] == [rotated["id"]]
    everything = orjson.loads(_run(keys_app, "list", "--all", "--json", "-c", config_file).output)
    assert {k["id"]: k["status"] for k in everything} == {
        created["id"]: "revoked",
        rotated["id"]: "active",
    }
    revoked = orjson.loads(
        _run(keys_app, "revoke", rotated["id"], "--json", "-c", config_file).output
    )
    assert revoked["status"] == "revoked" and "key" not in revoked
    store = _store(config_file)
    assert store.verify(created["key"]).status() == "revoked"
    assert store.verify(rotated["key"]).status() == "revoked"


def test_errors_exit_non_zero_with_a_message(config_file, tmp_path) -> None:
    missing = _run(keys_app, "revoke", "key_nope", "-c", config_file)
    assert missing.exit_code == 1 and "no API key" in missing.output
    created = orjson.loads(_run(keys_app, "create", "-o", "x", "--json", "-c", config_file).output)
    _run(keys_app, "revoke", created["id"], "-c", config_file)
    again = _run(keys_app, "rotate", created["id"], "-c", config_file)
    assert again.exit_code == 1 and "cannot be rotated" in again.output
    bad = _run(keys_app, "create", "-o", "x", "--expires", "soon", "-c", config_file)
    assert bad.exit_code == 2
    nofile = _run(keys_app, "list", "-c", tmp_path / "absent.yaml")
    assert nofile.exit_code == 2 and "not found" in nofile.output


def test_parse_expiry() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert parse_expiry("2w", now) == now + timedelta(weeks=2)
    assert parse_expiry("90m", now) == now + timedelta(minutes=90)
    assert parse_expiry("2031-02-03T04:05:06") == datetime(2031, 2, 3, 4, 5, 6, tzinfo=UTC)
    assert parse_expiry("never") is None


def _write_records(config_file, n: int) -> sa.Engine:
    engine = open_database(load_config(config_file).database_url)
    append_records(
        engine, [AuditRecord(request_id=f"r{i}", model_asked="m", latency_ms=1.5) for i in range(n)]
    )
    return engine


def test_audit_verify_export_and_tail(config_file, tmp_path) -> None:
    assert _run(audit_app, "verify", "-c", config_file).exit_code == 0  # creates the schema
    engine = _write_records(config_file, 12)
    ok = _run(audit_app, "verify", "-c", config_file)
    assert ok.exit_code == 0 and "12 record(s)" in ok.output

    out = tmp_path / "exports" / "audit.jsonl"
    exported = orjson.loads(_run(audit_app, "export", out, "--json", "-c", config_file).output)
    assert exported["records"] == 12 and len(out.read_text().splitlines()) == 12
    offline = _run(audit_app, "verify", "--file", out)
    assert offline.exit_code == 0, offline.output
    pin = f"12:{exported['last_hash']}"
    assert _run(audit_app, "verify", "--pin", pin, "-c", config_file).exit_code == 0
    wrong = _run(audit_app, "verify", "--pin", "12:" + "a" * 64, "-c", config_file)
    assert wrong.exit_code == 1 and "pinned" in wrong.output
    assert _run(audit_app, "verify", "--pin", "nope", "-c", config_file).exit_code == 2

    tail = _run(audit_app, "tail", "-n", "3", "--json", "-c", config_file)
    assert [orjson.loads(line)["request_id"] for line in tail.output.splitlines()] == [
        "r9",
        "r10",
        "r11",
    ]
    assert "m -> -" in _run(audit_app, "tail", "-n", "1", "-c", config_file).output

    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE wardgate_audit_log SET status = 500 WHERE seq = 4"))
    bad = _run(audit_app, "verify", "--json", "-c", config_file)
    assert bad.exit_code == 1
    assert orjson.loads(bad.output) | {"message": ""} == {
        "ok": False,
        "checked": 3,
        "last_seq": 3,
        "first_bad_seq": 4,
        "kind": "altered",
        "message": "",
    }
    engine.dispose()


def test_audit_tail_follow_prints_new_records(config_file) -> None:
    engine = _write_records(config_file, 2)
    timer = threading.Timer(0.3, lambda: append_records(engine, [AuditRecord(request_id="late")]))
    timer.start()
    result = _run(
        audit_app,
        "tail",
        "-n",
        "1",
        "--follow",
        "--interval",
        "0.2",
        "--polls",
        "5",
        "--json",
        "-c",
        config_file,
    )
    timer.join()
    ids = [orjson.loads(line)["request_id"] for line in result.output.splitlines()]
    assert ids == ["r1", "late"]
    engine.dispose()
