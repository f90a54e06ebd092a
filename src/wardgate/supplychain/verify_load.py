"""The gateway's load-time gate: verify, decrypt to memory-backed storage, audit, then load.

The llama.cpp backend calls :func:`prepare_model_file` around ``Llama(model_path=...)``::

    with prepare_model_file(Path(cfg.path), cfg.verify) as plaintext:
        llama = Llama(model_path=str(plaintext), ...)

Order of checks, and why:

1. An encrypted file (by magic bytes) is decrypted first, into a private 0700 folder on tmpfs
   (``/dev/shm``) as a 0600 file, never onto persistent disk. AES-GCM authenticates every chunk,
   so a tampered ciphertext stops here.
2. The pinned digest and the signature are checked on the *plaintext*: that is what a publisher
   signs and what ``sha256sum`` of the original download gives.
3. ``require_signature: true`` without a signature that verifies against a configured trust
   anchor refuses the model, and says which of those is missing.
4. The plaintext must be GGUF, the one format llama.cpp loads: an unrecognised file (random
   bytes, text, a format the scanner does not know) is refused, never loaded unscanned.
   GGUF chat templates are audited; findings are logged (and fatal with
   ``template_policy="fail"``).
5. On exit the plaintext copy is unlinked, after being overwritten with zeros unless this
   process still maps it (llama.cpp's default ``use_mmap``: zeroing would corrupt the live
   weights; the pages are freed when the model is unloaded).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from wardgate.errors import ModelVerificationFailed
from wardgate.supplychain.findings import Finding, Severity

if TYPE_CHECKING:
    from wardgate.config import VerifyConfig

log = logging.getLogger("wardgate.supplychain")

TMPFS_CANDIDATES = ("/dev/shm", "/run/user")  # noqa: S108 - memory-backed by design
_WIPE_BLOCK = 1024 * 1024


def _memory_backed(path: str) -> bool:
    """Is ``path`` on tmpfs/ramfs (longest matching mount point in /proc/self/mounts)?"""
    try:
        with open("/proc/self/mounts", encoding="utf-8") as mounts:
            entries = [line.split()[1:3] for line in mounts if len(line.split()) >= 3]
    except OSError:
        return False
    real = os.path.realpath(path)
    best, fstype = "", ""
    for mount_point, kind in entries:
        inside = real == mount_point or real.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) > len(best):
            best, fstype = mount_point, kind
    return fstype in ("tmpfs", "ramfs")


def _tmpfs_dir() -> str | None:
    """A writable, memory-backed folder; a plain directory named /dev/shm does not count."""
    for candidate in TMPFS_CANDIDATES:
        if os.path.isdir(candidate) and os.access(candidate, os.W_OK) and _memory_backed(candidate):
            return candidate
    return None


def _plain_name(path: Path) -> str:
    return path.name[: -len(".enc")] if path.name.endswith(".enc") else path.name


def _mapped_by_us(path: Path) -> bool:
    """Is the file memory-mapped in this process (llama.cpp's default ``use_mmap``)?"""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            target = str(path)
            return any(line.rstrip("\n").endswith(target) for line in maps)
    except OSError:
        return True  # cannot tell: assume mapped, never corrupt a loaded model


def _wipe(path: Path) -> None:
    """Overwrite with zeros, then unlink: tmpfs pages are freed, not left with weights in them.

    If the loader still maps the file, overwriting would zero the live weights under it
    (llama.cpp keeps tensors in the mapping), so then we only unlink: the pages live exactly
    as long as the mapping and are freed by the kernel when the model is unloaded.
    """
    if _mapped_by_us(path):
        with contextlib.suppress(OSError):
            path.unlink()
        return
    with contextlib.suppress(OSError):
        size = path.stat().st_size
        with open(path, "r+b", buffering=0) as handle:
            zeros = bytes(_WIPE_BLOCK)
            remaining = size
            while remaining > 0:
                remaining -= handle.write(zeros[: min(remaining, _WIPE_BLOCK)])
            os.fsync(handle.fileno())
    with contextlib.suppress(OSError):
        path.unlink()


@contextlib.contextmanager
def _decrypted(path: Path, verify: VerifyConfig) -> Iterator[Path]:
    from wardgate.supplychain.encryption import EncryptionError, decrypt_stream, load_key

    if not (verify.decryption_key_env or verify.decryption_key_file):
        raise ModelVerificationFailed(
            f"{path} is encrypted but no decryption_key_env or decryption_key_file is configured"
        )
    try:
        key = load_key(key_file=verify.decryption_key_file, key_env=verify.decryption_key_env)
    except EncryptionError as exc:
        raise ModelVerificationFailed(f"cannot load the decryption key for {path}: {exc}") from exc
    base = _tmpfs_dir()
    if base is None:
        raise ModelVerificationFailed(
            "no writable tmpfs (/dev/shm) to hold decrypted weights; refusing to write "
            "plaintext to persistent disk"
        )
    folder = Path(tempfile.mkdtemp(prefix="wardgate-model-", dir=base))  # 0700
    target = folder / _plain_name(path)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as sink, open(path, "rb") as source:
            decrypt_stream(source, sink, key)
        del key
        yield target
    except EncryptionError as exc:
        raise ModelVerificationFailed(f"cannot decrypt {path}: {exc}") from exc
    finally:
        _wipe(target)
        with contextlib.suppress(OSError):
            folder.rmdir()


def _check_digest(path: Path, expected: str) -> None:
    from wardgate.supplychain.hashing import digests_equal, hash_model

    actual = hash_model(path)
    # A single file is pinned by its own sha256 (what sha256sum prints) or by the root digest
    # (what `wardgate model hash --json` prints at the top level); a folder by the root.
    got = actual.files[0].sha256 if path.is_file() else actual.root
    if not any(digests_equal(candidate, expected) for candidate in (got, actual.root)):
        raise ModelVerificationFailed(
            f"{path.name}: sha256 {got[:16]}… does not match the pinned {expected.lower()[:16]}…"
        )


def _check_signature(path: Path, verify: VerifyConfig) -> None:
    from wardgate.supplychain.signing import verify_model

    assert verify.signature is not None
    verify_model(
        path,
        Path(verify.signature),
        public_key=Path(verify.public_key) if verify.public_key else None,
        certificate_chain=[Path(c) for c in verify.certificate_chain],
    )


def _audit_gguf(
    path: Path,
    policy: Literal["warn", "fail", "off"],
    pinned_template_sha256: str | None,
) -> list[Finding]:
    from wardgate.supplychain.formats import detect
    from wardgate.supplychain.gguf_meta import GGUFFormatError, read_metadata_file
    from wardgate.supplychain.gguf_template import audit_templates

    with open(path, "rb") as handle:
        kind = detect(handle.read(1024))
    if kind != "gguf":
        what = "an unknown format" if kind == "unknown" else f"{kind}, not GGUF"
        raise ModelVerificationFailed(
            f"{path.name}: the file is {what}; only GGUF weights are loaded, and a format "
            "that cannot be scanned is refused"
        )
    if policy == "off":
        return []
    try:
        meta = read_metadata_file(str(path))
    except GGUFFormatError as exc:
        raise ModelVerificationFailed(f"{path.name}: GGUF header is corrupt: {exc}") from exc
    pinned = {"default": pinned_template_sha256} if pinned_template_sha256 else {}
    findings = [
        finding
        for audit in audit_templates(meta.chat_templates(), location=path.name, pinned=pinned)
        for finding in audit.findings
    ]
    serious = [f for f in findings if f.severity >= Severity.MEDIUM]
    for finding in findings:
        log.warning("chat template finding %s: %s (%s)", finding.code, finding.message, path.name)
    if serious and policy == "fail":
        raise ModelVerificationFailed(
            f"{path.name}: chat template audit failed: "
            + "; ".join(f"{f.code}: {f.message}" for f in serious[:3])
        )
    return findings


def verify_problems(path: Path, verify: VerifyConfig) -> list[tuple[str, str]]:
    """Settings under ``verify:`` that cannot work for ``path``, found without hashing it.

    Returns ``(field, problem)`` pairs, ``field`` relative to ``verify``. The load-time gate
    refuses on the first; ``wardgate config check`` lists them all, so a missing key file or an
    unset key variable is reported before anyone waits for a model to load.
    """
    from wardgate.supplychain.encryption import EncryptionError, is_encrypted, load_key

    problems: list[tuple[str, str]] = []
    if verify.require_signature and not verify.signature:
        problems.append(
            ("require_signature", "require_signature is set but no signature file is configured")
        )
    if verify.signature:
        if not (verify.public_key or verify.certificate_chain):
            problems.append(
                (
                    "signature",
                    "a signature is configured but no trusted public_key or "
                    "certificate_chain to check it against",
                )
            )
        if not Path(verify.signature).is_file():
            problems.append(("signature", f"signature file not found: {verify.signature}"))
    if verify.public_key and not Path(verify.public_key).is_file():
        problems.append(("public_key", f"public key not found: {verify.public_key}"))
    for index, certificate in enumerate(verify.certificate_chain):
        if not Path(certificate).is_file():
            problems.append((f"certificate_chain.{index}", f"certificate not found: {certificate}"))
    key_field = "decryption_key_env" if verify.decryption_key_env else "decryption_key_file"
    if verify.decryption_key_env or verify.decryption_key_file:
        try:
            load_key(key_file=verify.decryption_key_file, key_env=verify.decryption_key_env)
        except EncryptionError as exc:
            problems.append((key_field, f"cannot load the decryption key: {exc}"))
    elif is_encrypted(path):
        problems.append(
            (
                "decryption_key_env",
                f"{path.name} is encrypted but no decryption_key_env or decryption_key_file "
                "is configured",
            )
        )
    return problems


@contextlib.contextmanager
def prepare_model_file(
    path: Path,
    verify: VerifyConfig,
    *,
    template_policy: Literal["warn", "fail", "off"] = "warn",
    pinned_template_sha256: str | None = None,
    on_findings: Callable[[list[Finding]], None] | None = None,
) -> Iterator[Path]:
    """Yield a path llama.cpp may load, or raise ModelVerificationFailed saying why not."""
    path = Path(path)
    if not path.is_file():
        raise ModelVerificationFailed(f"model file not found: {path}")
    problems = verify_problems(path, verify)
    if problems:
        raise ModelVerificationFailed(f"{path.name}: {problems[0][1]}")
    from wardgate.supplychain.encryption import is_encrypted

    with contextlib.ExitStack() as stack:
        plaintext = path
        if is_encrypted(path):
            plaintext = stack.enter_context(_decrypted(path, verify))
        elif verify.decryption_key_env or verify.decryption_key_file:
            log.warning("%s: a decryption key is configured but the file is not encrypted", path)
        if verify.sha256:
            _check_digest(plaintext, verify.sha256)
        if verify.signature:
            _check_signature(plaintext, verify)
        if not (verify.sha256 or verify.signature):
            log.info("%s: no pinned digest or signature configured; loading unverified", path.name)
        findings = _audit_gguf(plaintext, template_policy, pinned_template_sha256)
        if on_findings is not None:
            on_findings(findings)
        yield plaintext
