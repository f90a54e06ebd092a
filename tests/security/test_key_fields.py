"""Every key field is bounded before it reaches SQL, and SQL never logs its parameters.

Finding 4 of the outside review: ``rpm``/``tpm`` >= 2**63, an ``expires_at`` outside UTC's
years, and on PostgreSQL ``rpm`` 2**31 and an owner with NUL gave 500s whose traceback
logged the SQL parameters (the key's HMAC digest among them); ``wardgate keys create`` with
the same inputs printed a Python traceback.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from tests.security.conftest import FrontDoor
from typer.testing import CliRunner

from wardgate.cli.keys import keys_app
from wardgate.errors import InvalidRequest
from wardgate.store.db import create_engine_for, open_database
from wardgate.store.keys import KeyStore
from wardgate.store.tables import api_keys

#: (field, value) pairs each database or the UTC conversion used to choke on.
HOSTILE: list[tuple[str, Any]] = [
    ("rpm", 2**63),
    ("tpm", 2**63),
    ("rpm", 2**31),
    ("tpm", 2**31),
    ("rpm", -1),
    ("rpm", 1.5),
    ("rpm", True),
    ("rpm", "10"),
    ("expires_at", "9999-12-31T23:59:59-14:00"),
    ("expires_at", "0001-01-01T00:00:00+14:00"),
    ("expires_at", "2030-01-01T00:00:00"),
    ("owner", "evil\x00owner"),
    ("owner", "x" * 201),
    ("owner", ""),
    ("tier", "t\x00"),
    ("tier", "t" * 65),
    ("models", ["m\x00"]),
    ("models", []),
    ("models", ["m"] * 300 + [f"m{i}" for i in range(300)]),
    ("models", "smol"),
    ("admin", "yes"),
]


@pytest.mark.parametrize(("field", "value"), HOSTILE, ids=[f"{f}={v!r}"[:40] for f, v in HOSTILE])
def test_admin_api_refuses_out_of_range_fields_with_a_400(
    front_door: FrontDoor, gateway_log: pytest.LogCaptureFixture, field: str, value: Any
) -> None:
    response = front_door.call("POST", "/admin/keys", "admin", json={"owner": "fuzz", field: value})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"].split(".")[0] == field and error["code"] == "invalid_request_body"
    assert "Traceback" not in gateway_log.text


STORE_HOSTILE: list[dict[str, Any]] = [
    {"rpm": 2**63},
    {"tpm": 2**31},
    {"expires_at": datetime.fromisoformat("9999-12-31T23:59:59-14:00")},
    {"expires_at": datetime.fromisoformat("0001-01-01T00:00:00+14:00")},
    {"owner": "evil\x00owner"},
    {"owner": "surrogate\udcff"},
    {"tier": "\x00"},
    {"models": ["a\x00"]},
]


@pytest.mark.parametrize("bad", STORE_HOSTILE, ids=[next(iter(b)) for b in STORE_HOSTILE])
@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_store_refuses_what_a_column_cannot_hold(
    request: pytest.FixtureRequest, tmp_path: Path, database: str, bad: dict[str, Any]
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'k.db'}"
        if database == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    engine = open_database(url)
    try:
        store = KeyStore(engine, b"s" * 32)
        with pytest.raises(InvalidRequest) as refused:
            store.create(**{"owner": "o", **bad})
        assert refused.value.param == next(iter(bad))
        record, _ = store.create(owner="o", rpm=2**31 - 1, tpm=2**31 - 1)
        assert store.get(record.id).rpm == 2**31 - 1  # type: ignore[union-attr]
    finally:
        engine.dispose()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_sql_errors_never_carry_their_parameters(
    request: pytest.FixtureRequest, tmp_path: Path, database: str
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'k.db'}"
        if database == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    open_database(url).dispose()
    engine = create_engine_for(url)
    digest = "d1a6e57" * 9 + "f"
    row = {
        "id": "key_x",
        "digest": digest,
        "prefix": "wg-abcdefgh",
        "owner": "o",
        "models": ["*"],
        "tier": "t",
        "rpm": 2**63,
        "admin": False,
        "created_at": datetime.fromisoformat("2030-01-01T00:00:00+00:00"),
    }
    try:
        with pytest.raises((sa.exc.SQLAlchemyError, OverflowError)) as failed, engine.begin() as c:
            c.execute(sa.insert(api_keys).values(**row))
        assert digest not in str(failed.value)
        assert "wg-abcdefgh" not in str(failed.value)
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "args",
    [
        ["--rpm", str(2**63)],
        ["--tpm", str(2**31)],
        ["--expires", "9999-12-31T23:59:59-14:00"],
        ["--expires", "0001-01-01T00:00:00+14:00"],
        ["--tier", "x" * 65],
    ],
    ids=["rpm", "tpm", "expires-late", "expires-early", "tier"],
)
def test_cli_gives_one_clear_line_and_a_nonzero_exit(tmp_path: Path, args: list[str]) -> None:
    config = tmp_path / "wardgate.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "database_url": f"sqlite:///{tmp_path / 'wardgate.db'}",
                "auth": {"secret_env": "WG_NO_SUCH_VAR", "secret_file": str(tmp_path / "s")},
            }
        )
    )
    result = CliRunner().invoke(keys_app, ["create", "--owner", "x", *args, "-c", str(config)])
    assert result.exit_code not in (0, None)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
