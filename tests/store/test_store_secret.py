"""The server secret: environment first, else a 0600 file created once and reused."""

from __future__ import annotations

import os
import stat
import threading

import pytest

from wardgate.config import AuthConfig
from wardgate.errors import ConfigError
from wardgate.store.secret import load_or_create_secret


def _config(tmp_path, env: str = "WG_TEST_SECRET_UNSET") -> AuthConfig:
    return AuthConfig(secret_env=env, secret_file=str(tmp_path / "state" / "secret"))


def test_file_is_created_once_with_private_mode(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("WG_TEST_SECRET_UNSET", raising=False)
    config = _config(tmp_path)
    first = load_or_create_secret(config)
    path = tmp_path / "state" / "secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) == 64 and bytes.fromhex(first.decode())  # 32 random bytes, hex
    assert load_or_create_secret(config) == first
    assert load_or_create_secret(_config(tmp_path / "other")) != first


def test_environment_wins_and_matches_the_file_format(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("WG_TEST_SECRET", "  " + "ab" * 32 + "\n")
    assert load_or_create_secret(_config(tmp_path, "WG_TEST_SECRET")) == b"ab" * 32
    assert not (tmp_path / "state").exists()


def test_weak_or_exposed_secrets_fail_closed(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("WG_TEST_SECRET", "short")
    with pytest.raises(ConfigError, match="too short"):
        load_or_create_secret(_config(tmp_path, "WG_TEST_SECRET"))
    monkeypatch.delenv("WG_TEST_SECRET")
    config = _config(tmp_path, "WG_TEST_SECRET")
    load_or_create_secret(config)
    os.chmod(config.secret_file, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_or_create_secret(config)
    os.chmod(config.secret_file, 0o600)
    (tmp_path / "state" / "secret").write_text("\n")
    with pytest.raises(ConfigError, match="empty"):
        load_or_create_secret(config)


def test_concurrent_first_starts_agree(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("WG_TEST_SECRET_UNSET", raising=False)
    config = _config(tmp_path)
    results: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: results.append(load_or_create_secret(config)))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and len(set(results)) == 1
