"""Console sessions: an admin key is exchanged once for a random session token.

The cookie carries only the token (``HttpOnly``, ``SameSite=Strict``, ``Secure`` on TLS,
``Path=/console``); the server keeps its SHA-256, the admin key's id, a CSRF token, and two
deadlines (idle and absolute). Every request re-checks that the key is still an active admin
key, so revoking it ends its sessions at once. Sessions are per process: behind several
replicas, keep console traffic on one (sticky sessions) or log in to each.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field

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


class SessionStore:
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

    def end(self, token: str | None) -> None:
        if token:
            self._sessions.pop(_digest(token), None)

    def end_for_key(self, key_id: str) -> None:
        for digest in [d for d, s in self._sessions.items() if s.key_id == key_id]:
            del self._sessions[digest]

    @property
    def max_age_s(self) -> float:
        return self._max_age


def same(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))
