"""Console sessions: an admin key is exchanged once for a random session token.

The cookie carries only the token (``HttpOnly``, ``SameSite=Strict``, ``Secure`` on TLS,
``Path=/console``); the server keeps its SHA-256, the admin key's id, a CSRF token, and two
deadlines (idle and absolute). Every request re-checks that the key is still an active admin
key, so revoking it ends its sessions at once.

Two stores with one interface: :class:`SessionStore` in this process (the default), and
:class:`RedisSessionStore` when ``redis_url`` is set, so several gateway processes share
sessions (log in on one, use the console on another) and each session expires in Redis by
itself (its TTL is the nearer of the idle and the absolute deadline, renewed on use). A
Redis that cannot be reached fails closed: no session is found and none is created
(:class:`SessionStoreUnavailable`), never a silent fall-back to per-process sessions.
The methods block (Redis round trips); the routes call them on a worker thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import orjson

from wardgate.errors import WardgateError

COOKIE = "wg_console"
#: The pre-login CSRF cookie (double submit: the login form carries the same value).
LOGIN_COOKIE = "wg_console_login"


@dataclass
class Session:
    key_id: str
    csrf: str
    created: float
    seen: float
    owner: str = ""
    flash: list[str] = field(default_factory=list)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class SessionStoreUnavailable(WardgateError):
    """The shared session store (Redis) cannot be reached: the console fails closed."""

    status = 503
    code = "console_sessions_unavailable"


class Sessions(Protocol):
    """What the console needs of a session store."""

    @property
    def max_age_s(self) -> float: ...

    def create(self, key_id: str, owner: str) -> tuple[str, Session]: ...

    def get(self, token: str | None) -> Session | None: ...

    def save(self, token: str | None, session: Session) -> None: ...

    def end(self, token: str | None) -> None: ...

    def end_for_key(self, key_id: str) -> None: ...


class SessionStore:
    """Sessions in this process (a bounded LRU; the oldest is ended first)."""

    def __init__(self, *, idle_s: float, max_age_s: float, max_sessions: int) -> None:
        self._idle = idle_s
        self._max_age = max_age_s
        self._max = max_sessions
        self._sessions: OrderedDict[bytes, Session] = OrderedDict()

    def create(self, key_id: str, owner: str) -> tuple[str, Session]:
        token = secrets.token_urlsafe(32)
        now = time.monotonic()
        session = Session(key_id, secrets.token_urlsafe(32), now, now, owner)
        self._sessions[_digest(token)] = session
        while len(self._sessions) > self._max:
            self._sessions.popitem(last=False)
        return token, session

    def get(self, token: str | None) -> Session | None:
        if not token or len(token) > 128:
            return None
        digest = _digest(token)
        session = self._sessions.get(digest)
        if session is None:
            return None
        now = time.monotonic()
        if now - session.seen > self._idle or now - session.created > self._max_age:
            del self._sessions[digest]
            return None
        session.seen = now
        self._sessions.move_to_end(digest)
        return session

    def save(self, token: str | None, session: Session) -> None:
        """Nothing to do: the session object is the stored one."""

    def end(self, token: str | None) -> None:
        if token:
            self._sessions.pop(_digest(token), None)

    def end_for_key(self, key_id: str) -> None:
        for digest in [d for d, s in self._sessions.items() if s.key_id == key_id]:
            del self._sessions[digest]

    @property
    def max_age_s(self) -> float:
        return self._max_age


class RedisSessionStore:
    """Sessions in Redis, shared by every gateway process with the same ``redis_url``.

    ``{prefix}s:<sha256 of the token>`` holds the session as JSON (times are Unix time, as
    processes share no monotonic clock) with a TTL; ``{prefix}k:<key id>`` is the set of a
    key's session digests, so revoking the key ends its sessions everywhere.
    """

    def __init__(self, url: str, *, idle_s: float, max_age_s: float,
                 prefix: str = "wardgate:console:", client: Any = None) -> None:  # fmt: skip
        import redis

        self._idle = idle_s
        self._max_age = max_age_s
        self._prefix = prefix
        self._redis = client or redis.Redis.from_url(
            url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)

    @property
    def max_age_s(self) -> float:
        return self._max_age

    def _session_key(self, digest: bytes) -> str:
        return f"{self._prefix}s:{digest.hex()}"

    def _key_set(self, key_id: str) -> str:
        return f"{self._prefix}k:{key_id}"

    def _ttl_ms(self, session: Session, now: float) -> int:
        left = min(session.seen + self._idle, session.created + self._max_age) - now
        return max(1, int(left * 1000))

    def _write(self, digest: bytes, session: Session, now: float) -> None:
        pipe = self._redis.pipeline()
        pipe.set(self._session_key(digest), orjson.dumps(asdict(session)),
                 px=self._ttl_ms(session, now))
        pipe.sadd(self._key_set(session.key_id), digest.hex())
        pipe.pexpire(self._key_set(session.key_id), int(self._max_age * 1000))
        pipe.execute()

    def create(self, key_id: str, owner: str) -> tuple[str, Session]:
        token = secrets.token_urlsafe(32)
        now = time.time()
        session = Session(key_id, secrets.token_urlsafe(32), now, now, owner)
        try:
            self._write(_digest(token), session, now)
        except self._errors as exc:
            raise SessionStoreUnavailable(
                "the console's session store (Redis) is unavailable; try again") from exc
        return token, session

    def get(self, token: str | None) -> Session | None:
        if not token or len(token) > 128:
            return None
        digest = _digest(token)
        try:
            raw = self._redis.get(self._session_key(digest))
            if raw is None:
                return None
            session = Session(**orjson.loads(raw))
            now = time.time()
            if now - session.seen > self._idle or now - session.created > self._max_age:
                self._redis.delete(self._session_key(digest))
                return None
            session.seen = now
            self._redis.set(self._session_key(digest), orjson.dumps(asdict(session)),
                            px=self._ttl_ms(session, now), xx=True)
        except self._errors:
            return None  # fail closed: the visitor is asked to log in again
        except (TypeError, ValueError, orjson.JSONDecodeError):
            return None  # not a session this version wrote
        return session

    def save(self, token: str | None, session: Session) -> None:
        """Write back what a request changed (its flash messages)."""
        if not token:
            return
        digest = _digest(token)
        # A lost flash message is not worth failing the page for.
        with contextlib.suppress(*self._errors):
            self._redis.set(self._session_key(digest), orjson.dumps(asdict(session)),
                            px=self._ttl_ms(session, time.time()), xx=True)

    def end(self, token: str | None) -> None:
        if not token:
            return
        try:
            self._redis.delete(self._session_key(_digest(token)))
        except self._errors as exc:
            raise SessionStoreUnavailable(
                "the console's session store (Redis) is unavailable; the session could not "
                "be ended") from exc

    def end_for_key(self, key_id: str) -> None:
        try:
            digests = self._redis.smembers(self._key_set(key_id))
            keys = [f"{self._prefix}s:{d.decode() if isinstance(d, bytes) else d}"
                    for d in digests]
            self._redis.delete(*keys, self._key_set(key_id))
        except self._errors as exc:
            raise SessionStoreUnavailable(
                "the console's session store (Redis) is unavailable; the key's sessions "
                "could not be ended") from exc


def same(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))
