"""API keys against real SQLite and PostgreSQL: the raw key is shown once and stored only
as an HMAC under the server secret."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from wardgate.errors import ConfigError, InvalidRequest
from wardgate.store.keys import KeyNotFound, KeyStore, generate_raw_key
from wardgate.store.tables import api_keys

SECRET = b"s" * 64


@pytest.fixture
def store(engine) -> KeyStore:
    return KeyStore(engine, SECRET)


def test_raw_key_format() -> None:
    raw = generate_raw_key()
    assert raw.startswith("wg-") and len(raw) == 46
    assert len(base64.urlsafe_b64decode(raw[3:] + "=")) == 32
    assert generate_raw_key() != raw


def test_create_stores_only_the_keyed_digest(store: KeyStore, engine) -> None:
    record, raw = store.create("alice", models=["m1", "m2"], tier="restricted", rpm=10, tpm=0)
    assert record.owner == "alice" and record.models == ("m1", "m2")
    assert record.tier == "restricted" and record.rpm == 10 and record.tpm is None
    assert record.prefix == raw[:11] and record.display == raw[:11] + "…"
    assert record.created_at.tzinfo is not None and record.revoked_at is None
    with engine.connect() as conn:
        row = conn.execute(sa.select(api_keys)).mappings().one()
    expected = hmac.new(SECRET, raw.encode(), hashlib.sha256).hexdigest()
    assert row["digest"] == expected
    assert raw not in {str(v) for v in row.values()}
    assert raw[11:] not in " ".join(str(v) for v in row.values())


def test_verify_finds_the_key_and_nothing_else(store: KeyStore) -> None:
    record, raw = store.create("alice")
    assert store.verify(raw) == record
    assert store.verify(raw[:-1] + ("A" if raw[-1] != "A" else "B")) is None
    assert store.verify("") is None
    assert store.verify("wg-" + "x" * 600) is None
    # Another secret gives another digest: the hash is keyed.
    assert KeyStore(store._engine, b"t" * 64).digest(raw) != store.digest(raw)


def test_model_allowance(store: KeyStore) -> None:
    restricted, _ = store.create("bob", models=["small"])
    everything, _ = store.create("carol")
    assert restricted.allows_model("small") and not restricted.allows_model("big")
    assert everything.models == ("*",) and everything.allows_model("anything")


def test_revoke_and_status(store: KeyStore) -> None:
    record, raw = store.create("alice")
    revoked = store.revoke(record.id)
    assert revoked.revoked_at is not None and revoked.status() == "revoked"
    # Verify still returns it so the gateway can say "revoked" rather than "unknown".
    found = store.verify(raw)
    assert found is not None and not found.is_active()
    # Idempotent: the first revocation time is kept.
    assert store.revoke(record.id).revoked_at == revoked.revoked_at
    assert store.list() == [] and [k.id for k in store.list(include_revoked=True)] == [record.id]
    with pytest.raises(KeyNotFound):
        store.revoke("key_nope")


def test_expiry(store: KeyStore) -> None:
    past, _ = store.create("a", expires_at=datetime.now(UTC) - timedelta(seconds=1))
    future, raw = store.create("b", expires_at=datetime.now(UTC) + timedelta(days=1))
    assert past.status() == "expired" and not past.is_active()
    assert future.status() == "active"
    assert future.status(now=future.expires_at + timedelta(seconds=1)) == "expired"
    assert store.verify(raw).expires_at == future.expires_at
    with pytest.raises(InvalidRequest):
        store.create("c", expires_at=datetime(2030, 1, 1))  # naive: refused


def test_rotate_keeps_settings_and_revokes_the_old_key(store: KeyStore) -> None:
    old, old_raw = store.create("svc", models=["m"], tier="gold", rpm=5, tpm=500, admin=True)
    new, new_raw = store.rotate(old.id)
    assert new_raw != old_raw and new.id != old.id and new.rotated_from == old.id
    for field in ("owner", "models", "tier", "rpm", "tpm", "expires_at", "admin"):
        assert getattr(new, field) == getattr(old, field)
    assert store.verify(old_raw).status() == "revoked"
    assert store.verify(new_raw) == new and new.is_active()
    with pytest.raises(InvalidRequest) as excinfo:
        store.rotate(old.id)
    assert excinfo.value.code == "key_revoked"
    with pytest.raises(KeyNotFound):
        store.rotate("key_nope")


def test_find_by_id_or_prefix_and_update(store: KeyStore) -> None:
    record, _ = store.create("alice", rpm=3)
    assert store.find(record.id) == record
    assert store.find(record.display) == record
    with pytest.raises(KeyNotFound):
        store.find("wg-zzzzzzzz")
    updated = store.update(record.id, models=["x"], rpm=None, admin=True)
    assert updated.models == ("x",) and updated.rpm is None and updated.admin
    assert updated.owner == "alice" and store.get(record.id) == updated


def test_invalid_settings_are_refused(store: KeyStore) -> None:
    for kwargs in ({"owner": " "}, {"owner": "a", "models": []}, {"owner": "a", "rpm": -1}):
        with pytest.raises(InvalidRequest):
            store.create(**kwargs)


def test_digest_lookup_uses_the_unique_index(store: KeyStore, engine) -> None:
    inspector = sa.inspect(engine)
    uniques = inspector.get_unique_constraints("wardgate_api_keys")
    indexes = inspector.get_indexes("wardgate_api_keys")
    columns = [u["column_names"] for u in uniques] + [
        i["column_names"] for i in indexes if i.get("unique")
    ]
    assert ["digest"] in columns


def test_a_different_secret_fails_loudly(store: KeyStore, engine) -> None:
    _, raw = store.create("alice")
    other = KeyStore(engine, b"t" * 64)
    for action in (lambda: other.verify(raw), lambda: other.create("bob")):
        with pytest.raises(ConfigError, match="secret differs"):
            action()
    assert store.verify(raw) is not None
