"""API keys: created, verified, listed, revoked and rotated; stored only as keyed hashes.

A raw key is ``wg-`` followed by 43 URL-safe base64 characters (32 random bytes). It exists in
clear exactly once, in the return value of :meth:`KeyStore.create` / :meth:`KeyStore.rotate`.
The database keeps ``HMAC-SHA-256(server secret, raw key)``: a stolen table is useless without
the secret, and an unkeyed hash would not be (the keys are random, but the secret also stops
anyone with write access to the table from minting a key by inserting a digest they computed).

Verification computes the digest, finds the row through the unique index, and compares the
digests again with :func:`hmac.compare_digest`, so no step branches on how much of a guess
was right.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import Engine, RowMapping, insert, select, update
from sqlalchemy.exc import IntegrityError

from wardgate.errors import ConfigError, InvalidRequest, WardgateError
from wardgate.store.db import write_connection
from wardgate.store.tables import api_keys, meta

KEY_PREFIX = "wg-"
#: Characters of the random part shown in listings (``wg-abcd1234…``): 48 bits, enough to tell
#: keys apart, far too few to help guess one.
DISPLAY_CHARS = 8
_RAW_KEY_LEN = len(KEY_PREFIX) + 43
#: Longest value :meth:`KeyStore.verify` will hash; anything longer cannot be a key.
_MAX_RAW_LEN = 512

#: Bounds of every key setting, shared by the admin API's schema and the CLI so that no value
#: reaches SQL that a column cannot hold (``store/tables.py``): ``rpm``/``tpm`` are INTEGER,
#: 32-bit signed on PostgreSQL, and text columns reject NUL there.
MAX_OWNER_CHARS = 200
MAX_TIER_CHARS = 64
MAX_MODEL_NAME_CHARS = 256
MAX_MODELS_PER_KEY = 256
MAX_RATE_LIMIT = 2**31 - 1

_FINGERPRINT = "key_secret_fingerprint"
#: ``wardgate_meta`` row written when the database got its first admin key (migration 0003).
BOOTSTRAP_MARK = "admin_bootstrapped"
_FINGERPRINT_LABEL = b"wardgate key-secret fingerprint v1"

KeyStatus = Literal["active", "revoked", "expired"]

#: Permissions a non-admin key can be given on top of chat (migration 0004).
KNOWN_SCOPES = frozenset({"watermark:detect"})


class KeyNotFound(WardgateError):
    """No API key has this id."""

    status = 404
    code = "key_not_found"
    type = "invalid_request_error"


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One API key as the rest of Wardgate sees it: settings and state, never the secret."""

    id: str
    prefix: str
    owner: str
    models: tuple[str, ...]
    tier: str
    rpm: int | None
    tpm: int | None
    expires_at: datetime | None
    admin: bool
    created_at: datetime
    revoked_at: datetime | None
    rotated_from: str | None = None
    scopes: tuple[str, ...] = ()

    @property
    def display(self) -> str:
        """The prefix as shown to people, ``wg-abcd1234…``."""
        return f"{self.prefix}…"

    def allows_model(self, name: str) -> bool:
        """Whether this key may call ``name`` (``"*"`` in ``models`` allows every model)."""
        return "*" in self.models or name in self.models

    def status(self, now: datetime | None = None) -> KeyStatus:
        """``revoked`` wins over ``expired``: an operator's explicit act is the better message."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= (now or datetime.now(UTC)):
            return "expired"
        return "active"

    def is_active(self, now: datetime | None = None) -> bool:
        return self.status(now) == "active"

    def as_dict(self) -> dict[str, Any]:
        """The key as JSON, one shape for the CLI and the admin API (never the secret)."""
        return {
            "id": self.id,
            "prefix": self.prefix,
            "owner": self.owner,
            "models": list(self.models),
            "tier": self.tier,
            "rpm": self.rpm,
            "tpm": self.tpm,
            "admin": self.admin,
            "status": self.status(),
            "expires_at": _iso(self.expires_at),
            "created_at": _iso(self.created_at),
            "revoked_at": _iso(self.revoked_at),
            "rotated_from": self.rotated_from,
            "scopes": list(self.scopes),
        }

    def has_scope(self, scope: str) -> bool:
        """Admin keys hold every scope."""
        return self.admin or scope in self.scopes


def _mark(now: datetime | None) -> str:
    return (now or datetime.now(UTC)).isoformat(timespec="seconds")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def generate_raw_key() -> str:
    """A fresh key: ``wg-`` + 43 URL-safe base64 characters of 32 random bytes."""
    body = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode("ascii")
    return KEY_PREFIX + body


def looks_like_key(raw: str) -> bool:
    """A cheap shape check (not a secret comparison), for CLIs that accept a key or an id."""
    return raw.startswith(KEY_PREFIX) and len(raw) == _RAW_KEY_LEN


class KeyStore:
    """API keys in SQL. Thread-safe: every method opens its own short transaction."""

    def __init__(self, engine: Engine, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the key-hash secret must be at least 16 bytes")
        self._engine = engine
        self._secret = secret
        self._secret_checked = False

    def digest(self, raw: str) -> str:
        """HMAC-SHA-256 of a raw key under the server secret, hex."""
        data = raw.encode("utf-8", "surrogatepass")
        return hmac.new(self._secret, data, hashlib.sha256).hexdigest()

    def check_secret(self) -> None:
        """Fail with :class:`ConfigError` if this secret is not the one the keys were made with.

        The first process to use a database records a fingerprint of its secret (an HMAC of a
        fixed label: it reveals nothing about the secret). Without this, a CLI run from another
        directory (a relative ``secret_file``) would mint keys no gateway accepts, and a gateway
        with a lost secret would answer every client "invalid API key" with no hint why.
        Checked once per store, before the first create, rotate or verify.
        """
        if self._secret_checked:
            return
        mine = hmac.new(self._secret, _FINGERPRINT_LABEL, hashlib.sha256).hexdigest()
        query = select(meta.c.value).where(meta.c.name == _FINGERPRINT)
        with self._engine.connect() as conn:
            stored = conn.execute(query).scalar_one_or_none()
        if stored is None:
            try:
                with self._engine.begin() as conn:
                    conn.execute(insert(meta).values(name=_FINGERPRINT, value=mine))
                stored = mine
            except IntegrityError:  # another process recorded its fingerprint first
                with self._engine.connect() as conn:
                    stored = conn.execute(query).scalar_one()
        if not hmac.compare_digest(stored, mine):
            raise ConfigError(
                "the server secret differs from the one this database's API keys were created "
                "with; point auth.secret_env or auth.secret_file at the original secret"
            )
        self._secret_checked = True

    def create(
        self,
        owner: str,
        models: Sequence[str] = ("*",),
        tier: str = "standard",
        rpm: int | None = None,
        tpm: int | None = None,
        expires_at: datetime | None = None,
        admin: bool = False,
        scopes: Sequence[str] = (),
    ) -> tuple[ApiKey, str]:
        """Create a key; returns the record and the raw key, which is not kept anywhere."""
        values = _validated(owner, models, tier, rpm, tpm, expires_at)
        unknown = sorted(set(scopes) - KNOWN_SCOPES)
        if unknown:
            raise InvalidRequest(
                f"unknown scope {unknown[0][:64]!r}; known: {', '.join(sorted(KNOWN_SCOPES))}",
                param="scopes",
            )
        if scopes:
            values["scopes"] = sorted(set(scopes))
        self.check_secret()
        created = self._insert({**values, "admin": bool(admin), "rotated_from": None})
        if admin:
            # An operator's own admin key counts as the first one: serve must not add another.
            with contextlib.suppress(IntegrityError), self._engine.begin() as conn:
                if not self.bootstrapped(conn):
                    conn.execute(insert(meta).values(name=BOOTSTRAP_MARK, value=_mark(now=None)))
        return created

    def bootstrapped(self, conn: Any = None) -> bool:
        """Has this database had its first admin key (made by ``serve`` or by an operator)?"""
        query = select(meta.c.value).where(meta.c.name == BOOTSTRAP_MARK)
        if conn is not None:
            return conn.execute(query).first() is not None
        with self._engine.connect() as own:
            return own.execute(query).first() is not None

    def bootstrap_admin(self) -> tuple[ApiKey, str] | None:
        """The database's first admin key, made at most once in the database's life.

        ``None`` when it was made before, by any process, at any time — even if every admin
        key has since been revoked: after an incident, a restart must not mint a new one (an
        operator does that with ``wardgate keys create --admin``). The mark and the key are
        written in one transaction under the write lock, so concurrent first starts make one.
        """
        self.check_secret()
        now = datetime.now(UTC)
        raw = generate_raw_key()
        values = _validated("admin", ["*"], "admin", None, None, None)
        row = self._row(raw, {**values, "admin": True, "rotated_from": None}, now)
        try:
            with write_connection(self._engine) as conn, conn.begin():
                if self.bootstrapped(conn):
                    return None
                existing = conn.execute(
                    select(api_keys.c.id).where(api_keys.c.admin.is_(True)).limit(1)
                ).first()
                conn.execute(insert(meta).values(name=BOOTSTRAP_MARK, value=_mark(now)))
                if existing is not None:
                    return None
                conn.execute(insert(api_keys).values(**row))
        except IntegrityError:  # another process made it at the same moment
            return None
        return _record(row), raw

    def verify(self, raw: str) -> ApiKey | None:
        """The key record for ``raw``, or ``None`` if no key matches.

        Revoked and expired keys are returned too (check :meth:`ApiKey.status`), so the caller
        can tell a client *why* it was refused.
        """
        if not raw or len(raw) > _MAX_RAW_LEN:
            return None
        self.check_secret()
        wanted = self.digest(raw)
        with self._engine.connect() as conn:
            row = (
                conn.execute(select(api_keys).where(api_keys.c.digest == wanted)).mappings().first()
            )
        if row is None or not hmac.compare_digest(row["digest"], wanted):
            return None
        return _record(row)

    def get(self, key_id: str) -> ApiKey | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).mappings().first()
        return None if row is None else _record(row)

    def find(self, ref: str) -> ApiKey:
        """A key by id or by its display prefix (``wg-abcd1234``, with or without ``…``).

        Raises :class:`KeyNotFound`, or :class:`InvalidRequest` when a prefix is ambiguous.
        """
        by_id = self.get(ref)
        if by_id is not None:
            return by_id
        prefix = ref.rstrip("…").rstrip(".")
        with self._engine.connect() as conn:
            rows = (
                conn.execute(select(api_keys).where(api_keys.c.prefix == prefix)).mappings().all()
            )
        if len(rows) > 1:
            raise InvalidRequest(
                f"{len(rows)} keys share the prefix {prefix}; use the key id", code="ambiguous_key"
            )
        if not rows:
            raise KeyNotFound(f"no API key with id or prefix {ref!r}")
        return _record(rows[0])

    def list(self, include_revoked: bool = False) -> list[ApiKey]:
        """Keys in creation order; revoked ones only when asked (expired ones always show)."""
        query = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
        if not include_revoked:
            query = query.where(api_keys.c.revoked_at.is_(None))
        with self._engine.connect() as conn:
            return [_record(row) for row in conn.execute(query).mappings()]

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key. Idempotent: revoking twice keeps the first revocation time."""
        now = datetime.now(UTC)
        with self._engine.begin() as conn:
            conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).mappings().first()
        if row is None:
            raise KeyNotFound(f"no API key with id {key_id!r}")
        return _record(row)

    def rotate(self, key_id: str) -> tuple[ApiKey, str]:
        """Issue a new secret with the same settings and revoke the old key, atomically.

        Rotating a revoked key is refused: revocation is an explicit decision that rotation
        must not quietly undo.
        """
        self.check_secret()
        now = datetime.now(UTC)
        raw = generate_raw_key()
        with self._engine.begin() as conn:
            revoked = conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=now)
            ).rowcount
            old = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).mappings().first()
            if old is None:
                raise KeyNotFound(f"no API key with id {key_id!r}")
            if revoked != 1:
                raise InvalidRequest(
                    f"API key {key_id} is revoked and cannot be rotated", code="key_revoked"
                )
            values = {
                column: old[column]
                for column in (
                    "owner", "models", "tier", "rpm", "tpm", "expires_at", "admin", "scopes"
                )
            }
            new = self._row(raw, {**values, "rotated_from": key_id}, now)
            conn.execute(insert(api_keys).values(**new))
        return _record(new), raw

    _UNSET: Any = object()

    def update(
        self,
        key_id: str,
        *,
        owner: str | None = None,
        models: Sequence[str] | None = None,
        tier: str | None = None,
        rpm: int | None = _UNSET,
        tpm: int | None = _UNSET,
        expires_at: datetime | None = _UNSET,
        admin: bool | None = None,
    ) -> ApiKey:
        """Change a key's settings; arguments left out keep their value (``rpm=None`` clears)."""
        current = self.get(key_id)
        if current is None:
            raise KeyNotFound(f"no API key with id {key_id!r}")
        values = _validated(
            owner if owner is not None else current.owner,
            models if models is not None else current.models,
            tier if tier is not None else current.tier,
            current.rpm if rpm is self._UNSET else rpm,
            current.tpm if tpm is self._UNSET else tpm,
            current.expires_at if expires_at is self._UNSET else expires_at,
        )
        values["admin"] = current.admin if admin is None else bool(admin)
        with self._engine.begin() as conn:
            conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(**values))
            row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).mappings().one()
        return _record(row)

    def _insert(self, values: dict[str, Any]) -> tuple[ApiKey, str]:
        raw = generate_raw_key()
        row = self._row(raw, values, datetime.now(UTC))
        with self._engine.begin() as conn:
            conn.execute(insert(api_keys).values(**row))
        return _record(row), raw

    def _row(self, raw: str, values: dict[str, Any], now: datetime) -> dict[str, Any]:
        return {
            **values,
            "id": "key_" + secrets.token_hex(8),
            "digest": self.digest(raw),
            "prefix": raw[: len(KEY_PREFIX) + DISPLAY_CHARS],
            "created_at": now,
            "revoked_at": None,
        }


def _validated(
    owner: str,
    models: Iterable[str],
    tier: str,
    rpm: int | None,
    tpm: int | None,
    expires_at: datetime | None,
) -> dict[str, Any]:
    """Key settings checked against the store's bounds, or :class:`InvalidRequest` naming the
    field (never echoing the value)."""
    owner = _text_field("owner", owner, MAX_OWNER_CHARS).strip()
    if not owner:
        raise InvalidRequest(f"owner must be 1-{MAX_OWNER_CHARS} characters", param="owner")
    names = [_text_field("models", m, MAX_MODEL_NAME_CHARS).strip() for m in models]
    model_list = list(dict.fromkeys(m for m in names if m))
    if not model_list:
        raise InvalidRequest("a key needs at least one model (or '*' for all)", param="models")
    if len(model_list) > MAX_MODELS_PER_KEY:
        raise InvalidRequest(f"a key may list at most {MAX_MODELS_PER_KEY} models", param="models")
    tier = _text_field("tier", tier, MAX_TIER_CHARS)
    if not tier:
        raise InvalidRequest(f"tier must be 1-{MAX_TIER_CHARS} characters", param="tier")
    for name, limit in (("rpm", rpm), ("tpm", tpm)):
        if limit is None:
            continue
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise InvalidRequest(f"{name} must be a whole number", param=name)
        if not 0 <= limit <= MAX_RATE_LIMIT:
            raise InvalidRequest(f"{name} must be between 0 and {MAX_RATE_LIMIT}", param=name)
    return {
        "owner": owner,
        "models": model_list,
        "tier": tier,
        "rpm": rpm or None,
        "tpm": tpm or None,
        "expires_at": utc_expiry(expires_at),
    }


def utc_expiry(expires_at: datetime | None) -> datetime | None:
    """``expires_at`` in UTC; it must carry a timezone and be a time UTC can represent
    (``9999-12-31T23:59:59-14:00`` is in the year 10000 there)."""
    if expires_at is None:
        return None
    if expires_at.tzinfo is None or expires_at.utcoffset() is None:
        raise InvalidRequest("expires_at must include a timezone", param="expires_at")
    try:
        return expires_at.astimezone(UTC)
    except (OverflowError, ValueError) as exc:
        raise InvalidRequest(
            "expires_at is outside the years 1-9999 once converted to UTC", param="expires_at"
        ) from exc


def _text_field(name: str, value: object, limit: int) -> str:
    """A string within ``limit`` characters, without control characters or lone surrogates
    (NUL cannot be stored by PostgreSQL; the others have no place in a name)."""
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} must be text", param=name)
    if len(value) > limit:
        raise InvalidRequest(f"{name} must be at most {limit} characters", param=name)
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or 0xD800 <= ord(c) < 0xE000 for c in value):
        raise InvalidRequest(f"{name} must not contain control characters", param=name)
    return value


def _record(row: RowMapping | dict[str, Any]) -> ApiKey:
    expires_at = row["expires_at"]
    return ApiKey(
        id=row["id"],
        prefix=row["prefix"],
        owner=row["owner"],
        models=tuple(row["models"]),
        tier=row["tier"],
        rpm=row["rpm"],
        tpm=row["tpm"],
        expires_at=expires_at.astimezone(UTC) if expires_at is not None else None,
        admin=bool(row["admin"]),
        created_at=row["created_at"].astimezone(UTC),
        revoked_at=row["revoked_at"].astimezone(UTC) if row["revoked_at"] else None,
        rotated_from=row["rotated_from"],
        scopes=tuple(row.get("scopes") or ()),
    )
