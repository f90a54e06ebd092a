"""Sign and verify models in the OpenSSF model-signing format (in-toto statement, Sigstore bundle).

This is a thin, typed layer over the ``model_signing`` package (its stable ``signing`` and
``verifying`` APIs), so a Wardgate signature verifies with ``model_signing verify`` and the other
way round. What we add: key generation, atomic writes (a failed sign never leaves a partial
signature), one error type with a reason a person can act on, and the trusted-key choice the
gateway needs (EC P-256 public key, certificate chain, or Sigstore identity).
"""

from __future__ import annotations

import ast
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wardgate.errors import ModelVerificationFailed


class SigningError(Exception):
    """Signing could not produce a signature (bad key, unreadable model, no network...)."""


@dataclass(frozen=True)
class Verified:
    """A successful verification: what was checked and against which trust anchor."""

    model: str
    signature: str
    method: str  # "public-key", "certificate", "sigstore"
    files: int


def generate_key_pair(private_key: Path, public_key: Path, password: str | None = None) -> None:
    """A new EC P-256 key pair as PEM; the private key is written 0600."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode())
        if password
        else serialization.NoEncryption()
    )
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    atomic_write(private_key, private_pem, mode=0o600)
    atomic_write(public_key, public_pem, mode=0o644)


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write to a temporary file beside ``path`` and rename: readers never see half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _hashing_config() -> Any:
    from model_signing import hashing

    return hashing.Config().use_file_serialization(hashing_algorithm="sha256")


def sign_model(
    model: Path,
    signature: Path,
    *,
    private_key: Path | None = None,
    password: str | None = None,
    certificate: Path | None = None,
    certificate_chain: Sequence[Path] = (),
    sigstore: bool = False,
    identity_token: str | None = None,
) -> None:
    """Sign a model file or folder; exactly one of key, key+certificate, or Sigstore."""
    from model_signing import signing

    model = Path(model)
    if not model.exists():
        raise SigningError(f"no such model file or folder: {model}")
    config = signing.Config().set_hashing_config(_hashing_config())
    try:
        if sigstore:
            config.use_sigstore_signer(identity_token=identity_token)
        elif private_key is not None and certificate is not None:
            config.use_certificate_signer(
                private_key=private_key,
                signing_certificate=certificate,
                certificate_chain=list(certificate_chain),
            )
        elif private_key is not None:
            config.use_elliptic_key_signer(private_key=private_key, password=password)
        else:
            raise SigningError("give a private key (optionally with a certificate) or --sigstore")
        signature = Path(signature)
        with tempfile.TemporaryDirectory(dir=signature.parent or ".") as tmp:
            staged = Path(tmp) / "signature"
            config.sign(model, staged)
            atomic_write(signature, staged.read_bytes())
    except SigningError:
        raise
    except Exception as exc:  # model_signing raises ValueError, OSError, crypto errors...
        raise SigningError(f"signing {model} failed: {exc}") from exc


def verify_model(
    model: Path,
    signature: Path,
    *,
    public_key: Path | None = None,
    certificate_chain: Sequence[Path] = (),
    sigstore_identity: str | None = None,
    sigstore_issuer: str | None = None,
) -> Verified:
    """Verify a model against a signature and a trust anchor, or raise ModelVerificationFailed.

    The trust anchor is required: a signature by *some* key proves nothing.
    """
    from model_signing import verifying

    model = Path(model)
    signature = Path(signature)
    if not model.exists():
        raise ModelVerificationFailed(f"model not found: {model}")
    if not signature.is_file():
        raise ModelVerificationFailed(f"signature file not found: {signature}")
    config = verifying.Config().set_hashing_config(_hashing_config())
    if public_key is not None:
        if not Path(public_key).is_file():
            raise ModelVerificationFailed(f"public key not found: {public_key}")
        method = "public-key"
        try:
            config.use_elliptic_key_verifier(public_key=public_key)
        except Exception as exc:
            raise ModelVerificationFailed(f"cannot load public key {public_key}: {exc}") from exc
    elif certificate_chain:
        method = "certificate"
        config.use_certificate_verifier(certificate_chain=list(certificate_chain))
    elif sigstore_identity and sigstore_issuer:
        method = "sigstore"
        config.use_sigstore_verifier(identity=sigstore_identity, oidc_issuer=sigstore_issuer)
    else:
        raise ModelVerificationFailed(
            "no trust anchor: give a public key, a certificate chain, or a Sigstore identity"
        )
    try:
        config.verify(model, signature)
    except Exception as exc:
        raise ModelVerificationFailed(
            f"signature verification failed for {model}: {_reason(exc, model)}"
        ) from exc
    from wardgate.supplychain.hashing import model_files

    return Verified(str(model), str(signature), method, len(model_files(model)))


def _reason(exc: Exception, model: Path | None = None) -> str:
    text = str(exc) or type(exc).__name__
    if "Signature mismatch" in text or "Hash mismatch" in text:
        diffs = _mismatches(text)
        joined = "\n".join(diffs)
        changed = [
            _changed(m, model)
            for m in re.finditer(r"Hash mismatch for '(?P<name>[^']+)': (?P<rest>.*)", joined)
        ]
        extra = re.findall(r"Extra files found in model '[^']*': (.+)", joined)
        missing = re.findall(r"Missing files in model '[^']*': (.+)", joined)
        parts = [f"changed: {', '.join(changed)}"] if changed else []
        parts += [f"not signed: {extra[0].strip()}"] if extra else []
        parts += [f"missing: {missing[0].strip()}"] if missing else []
        return "the model's files do not match what was signed (" + ("; ".join(parts) or text) + ")"
    if "InvalidSignature" in type(exc).__name__ or "signature" in text.lower():
        return f"the signature was not made by the trusted key ({text})"
    return text


def _mismatches(text: str) -> list[str]:
    """The differences model-signing lists: ``Signature mismatch: [...]`` is a Python list
    literal (its quoting depends on the bytes inside), so read it as one rather than by regex."""
    _, _, listed = text.partition("Signature mismatch: ")
    try:
        value = ast.literal_eval(listed.strip())
    except (ValueError, SyntaxError):
        return [text]
    return [str(v) for v in value] if isinstance(value, list) else [text]


_DIGEST_BYTES = re.compile(r"digest_value=(b'(?:[^'\\]|\\.)*'|b\"(?:[^\"\\]|\\.)*\")")


def _changed(match: re.Match[str], model: Path | None) -> str:
    """``weights.bin (signed sha256 <hex>, now <hex>)``: digests in hex, never a bytes repr."""
    name = match.group("name")
    if name == "." and model is not None:
        name = model.name  # a single-file model is one resource named "."
    digests = []
    for literal in _DIGEST_BYTES.findall(match.group("rest")):
        try:
            digests.append(ast.literal_eval(literal).hex())
        except (ValueError, SyntaxError):
            return name
    if len(digests) == 2:
        return f"{name} (signed sha256 {digests[0]}, now {digests[1]})"
    return name
