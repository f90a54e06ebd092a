"""The Ed25519 keys that sign receipts: one active, any number of previous ones published.

The active private key comes from the environment variable ``receipts.key_env`` (PEM) or from
``receipts.key_file`` (PKCS#8 PEM, created 0600 on first start, like the server secret). Each
key's id is its RFC 7638 JWK thumbprint, so a verifier can recompute it from the JWKS alone.
Rotation: generate a new key (``wardgate receipt keygen``), point ``key_file`` at it and list
the old file under ``previous_keys``; old receipts keep verifying against the published JWKS.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joserfc.jwk import KeySet, OKPKey

from wardgate.errors import ConfigError
from wardgate.provenance.config import ReceiptsConfig

#: RFC 9864's fully specified name for EdDSA over Ed25519 (the bare "EdDSA" is deprecated).
ALGORITHM = "Ed25519"


def generate_key_pem() -> bytes:
    """A new Ed25519 private key as PKCS#8 PEM."""
    pem: bytes = OKPKey.generate_key("Ed25519").as_pem(private=True)
    return pem


def write_private_key(path: Path) -> bool:
    """Create ``path`` (0600) holding a new key; False when it already exists (another
    process won the race, and its key is the one to use)."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    except OSError as exc:
        raise ConfigError(f"cannot create the receipt key file {path}: {exc.strerror}") from exc
    try:
        os.write(fd, generate_key_pem())
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def _import(data: bytes, source: str) -> OKPKey:
    try:
        key = OKPKey.import_key(data)
    except Exception as exc:  # joserfc raises several types for malformed input
        raise ConfigError(f"{source} is not an Ed25519 key in PEM form") from exc
    if key.as_dict(private=False).get("crv") != "Ed25519":
        raise ConfigError(f"{source} is not an Ed25519 key")
    return key


def _read_key_file(path: Path, *, private: bool) -> OKPKey:
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the receipt key file {path}: {exc.strerror}") from exc
    key = _import(data, f"receipt key file {path}")
    if private and key.is_private and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"the receipt key file {path} is accessible by other users; run `chmod 600 {path}`"
        )
    if private and not key.is_private:
        raise ConfigError(f"the receipt key file {path} holds a public key; signing needs one")
    return key


@dataclass(frozen=True)
class SigningKeys:
    """The active signing key and every key published for verification."""

    active: OKPKey
    kid: str
    published: tuple[OKPKey, ...]

    @classmethod
    def load(cls, config: ReceiptsConfig, default_dir: Path) -> SigningKeys:
        from_env = os.environ.get(config.key_env)
        if from_env:
            active = _import(from_env.encode("utf-8"), f"environment variable {config.key_env}")
            if not active.is_private:
                raise ConfigError(f"{config.key_env} holds a public key; signing needs one")
        else:
            path = (
                Path(config.key_file).expanduser()
                if config.key_file
                else default_dir / "receipt-key.pem"
            )
            if not path.exists():
                write_private_key(path)
            active = _read_key_file(path, private=True)
        previous = [
            _read_key_file(Path(p).expanduser(), private=False) for p in config.previous_keys
        ]
        return cls.from_keys(active, previous)

    @classmethod
    def from_keys(cls, active: OKPKey, previous: list[OKPKey] | None = None) -> SigningKeys:
        seen: dict[str, OKPKey] = {}
        for key in [active, *(previous or [])]:
            public = OKPKey.import_key(key.as_dict(private=False))
            seen.setdefault(public.thumbprint(), public)
        return cls(active=active, kid=active.thumbprint(), published=tuple(seen.values()))

    def jwks(self) -> dict[str, Any]:
        """The public keys as a JWK Set (RFC 7517), each with ``kid``, ``alg`` and ``use``."""
        keys = []
        for key in self.published:
            jwk = key.as_dict(private=False)
            jwk.update(kid=key.thumbprint(), alg=ALGORITHM, use="sig")
            keys.append(jwk)
        return {"keys": keys}


def keyset_from_jwks(jwks: dict[str, Any]) -> KeySet:
    """A JWKS document (from ``/.well-known/wardgate/keys`` or a file) as a joserfc KeySet."""
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        raise ValueError("not a JWK Set: no 'keys' list")
    keys: list[Any] = []
    for entry in jwks["keys"]:
        if (
            not isinstance(entry, dict)
            or entry.get("kty") != "OKP"
            or entry.get("crv") != "Ed25519"
        ):
            continue
        public = {k: v for k, v in entry.items() if k != "d"}
        keys.append(OKPKey.import_key(public))
    return KeySet(keys)


def local_keyset(config: ReceiptsConfig, default_dir: Path) -> KeySet:
    """The public halves of the configured keys, read without creating any (offline verify)."""
    from_env = os.environ.get(config.key_env)
    sources: list[tuple[bytes, str]] = []
    if from_env:
        sources.append((from_env.encode("utf-8"), f"environment variable {config.key_env}"))
    else:
        path = (
            Path(config.key_file).expanduser()
            if config.key_file
            else (default_dir / "receipt-key.pem")
        )
        if not path.is_file():
            raise ConfigError(
                f"no receipt key at {path}; pass --jwks FILE (saved from "
                "/.well-known/wardgate/keys) or --config with the gateway's config"
            )
        sources.append((path.read_bytes(), f"receipt key file {path}"))
    for name in config.previous_keys:
        file = Path(name).expanduser()
        sources.append((file.read_bytes(), f"receipt key file {file}"))
    keys = [_import(data, source) for data, source in sources]
    return KeySet([OKPKey.import_key(k.as_dict(private=False)) for k in keys])
