"""The per-deployment watermark key: from an environment variable, else a key file.

The gateway creates the file (0600, 32 random bytes as hex) on first start; detection only
reads it and never creates one (a new key could detect nothing).
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from wardgate.errors import ConfigError
from wardgate.provenance.config import WatermarkConfig

MIN_KEY_CHARS = 32


def key_path(config: WatermarkConfig, default_dir: Path) -> Path:
    return Path(config.key_file).expanduser() if config.key_file else default_dir / "watermark-key"


def load_watermark_key(config: WatermarkConfig, default_dir: Path, *, create: bool) -> bytes:
    from_env = os.environ.get(config.key_env)
    if from_env is not None:
        return _checked(from_env, f"environment variable {config.key_env}")
    path = key_path(config, default_dir)
    if not path.exists():
        if not create:
            raise ConfigError(
                f"no watermark key: set {config.key_env} or provide the key file {path}"
            )
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        except OSError as exc:
            raise ConfigError(f"cannot create the watermark key {path}: {exc.strerror}") from exc
        else:
            try:
                os.write(fd, (secrets.token_hex(32) + "\n").encode("ascii"))
                os.fsync(fd)
            finally:
                os.close(fd)
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the watermark key {path}: {exc}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"the watermark key {path} is accessible by other users; run `chmod 600 {path}`"
        )
    return _checked(text, f"file {path}")


def _checked(value: str, source: str) -> bytes:
    value = value.strip()
    if len(value) < MIN_KEY_CHARS:
        raise ConfigError(
            f"the watermark key from {source} is too short: at least {MIN_KEY_CHARS} characters"
        )
    return value.encode("utf-8")
