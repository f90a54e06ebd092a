"""The server secret that keys the API-key hashes.

Read from the environment variable ``auth.secret_env`` when set, else from ``auth.secret_file``,
which is created on first start (mode 0600, 32 random bytes written as 64 hex characters, so
the same text can be moved into the environment variable unchanged). The secret is the text
with surrounding whitespace removed, encoded as UTF-8.

Losing or changing the secret invalidates every API key (their stored hashes no longer match);
that is deliberate, and the reason a too-short or world-readable secret is refused rather than
used: failing closed at start-up beats running with a key hash anyone could recompute.
"""

from __future__ import annotations

import os
import secrets
import stat
import time
from pathlib import Path

from wardgate.config import AuthConfig
from wardgate.errors import ConfigError

#: Shortest secret accepted (characters); 32 random bytes in hex are 64.
MIN_SECRET_CHARS = 32
_EMPTY_RETRIES = 20


def load_or_create_secret(config: AuthConfig) -> bytes:
    """The HMAC key for API-key digests; creates the secret file if neither source exists."""
    from_env = os.environ.get(config.secret_env)
    if from_env is not None:
        return _checked(from_env, f"environment variable {config.secret_env}")
    path = Path(config.secret_file).expanduser()
    if not path.exists():
        _create(path)
    return _read(path)


def _checked(value: str, source: str) -> bytes:
    value = value.strip()
    if len(value) < MIN_SECRET_CHARS:
        raise ConfigError(
            f"the server secret from {source} is too short: at least {MIN_SECRET_CHARS} "
            "characters are required (e.g. `openssl rand -hex 32`)"
        )
    return value.encode("utf-8")


def _create(path: Path) -> None:
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # O_EXCL: when two gateways start at once, exactly one creates the file and the other
        # reads it (below), so both end up with the same secret.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise ConfigError(f"cannot create the secret file {path}: {exc.strerror}") from exc
    try:
        os.write(fd, (secrets.token_hex(32) + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)


def _read(path: Path) -> bytes:
    for _ in range(_EMPTY_RETRIES):
        try:
            mode = path.stat().st_mode
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the secret file {path}: {exc}") from exc
        if text.strip():
            break
        # Another process may have just created it and not yet written; give it a moment.
        time.sleep(0.05)
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"the secret file {path} is accessible by other users; run `chmod 600 {path}`"
        )
    if not text.strip():
        raise ConfigError(f"the secret file {path} is empty")
    return _checked(text, f"file {path}")
