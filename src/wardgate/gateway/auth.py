"""Bearer-key authentication with a short-lived in-process cache.

Every request must present a key. Looking each one up in SQL would put a database round trip
(and a thread hop, since SQLAlchemy here is synchronous) on the hot path, so verified records
are cached for ``auth.key_cache_ttl_s`` seconds, keyed by a SHA-256 of the raw key (the raw key
itself is never kept). Unknown keys are cached too, so a client hammering with a bad key
cannot hammer the database. Revocation through this process's admin API clears the cache at
once; other processes notice within the TTL.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from datetime import UTC, datetime

from wardgate.errors import AuthenticationFailed, KeyNotUsable, PermissionDenied
from wardgate.store.keys import ApiKey, KeyStore

_MAX_CACHED = 10_000


class KeyAuthenticator:
    """Turns an ``Authorization`` header into an active :class:`ApiKey` or a 401."""

    def __init__(self, store: KeyStore, *, ttl_s: float) -> None:
        self._store = store
        self._ttl = ttl_s
        self._cache: OrderedDict[bytes, tuple[float, ApiKey | None]] = OrderedDict()

    async def authenticate(self, authorization: str | None) -> ApiKey:
        raw = _bearer_token(authorization)
        record = await self._lookup(raw)
        if record is None:
            raise AuthenticationFailed("invalid API key")
        if record.revoked_at is not None:
            raise KeyNotUsable(
                "this API key has been revoked", key_id=record.id, code="key_revoked"
            )
        if record.expires_at is not None and record.expires_at <= datetime.now(UTC):
            raise KeyNotUsable("this API key has expired", key_id=record.id, code="key_expired")
        return record

    async def authenticate_admin(self, authorization: str | None) -> ApiKey:
        record = await self.authenticate(authorization)
        if not record.admin:
            raise PermissionDenied("this endpoint needs an admin key", code="admin_required")
        return record

    def invalidate(self) -> None:
        """Forget every cached record (after a revoke, rotate or update)."""
        self._cache.clear()

    async def _lookup(self, raw: str) -> ApiKey | None:
        cache_key = hashlib.sha256(raw.encode("utf-8", "surrogatepass")).digest()
        now = time.monotonic()
        hit = self._cache.get(cache_key)
        if hit is not None and hit[0] > now:
            return hit[1]
        record = await asyncio.to_thread(self._store.verify, raw)
        if self._ttl > 0:
            self._cache[cache_key] = (now + self._ttl, record)
            self._cache.move_to_end(cache_key)
            while len(self._cache) > _MAX_CACHED:
                self._cache.popitem(last=False)
        return record


def _bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise AuthenticationFailed(
            "missing API key: send 'Authorization: Bearer <key>'", code="missing_api_key"
        )
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationFailed(
            "malformed Authorization header: expected 'Bearer <key>'", code="missing_api_key"
        )
    if len(token) > 512:
        raise AuthenticationFailed("invalid API key")
    return token
