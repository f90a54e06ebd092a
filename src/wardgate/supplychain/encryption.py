"""Weights encrypted at rest: AES-256-GCM in authenticated chunks, streamed in constant memory.

Format (all integers little-endian)::

    header  = b"WGENC\\x00" | version u8 (=1) | reserved u8 | chunk_size u32 | salt 16 bytes
    chunk_i = AES-256-GCM(file_key, nonce_i, plaintext_i, aad=header) -> ciphertext_i | tag(16)
    file_key = HKDF-SHA256(master key, salt, info=b"wardgate-weights-v1")
    nonce_i  = i as u64 | 3 zero bytes | last-flag u8

Why this shape: a fresh key per file (random salt) makes nonce reuse across files impossible;
the counter in the nonce stops chunks being reordered; the last-flag stops truncation at a chunk
boundary (the real last chunk only authenticates with flag 1, so dropping the tail fails); the
header as associated data stops it being edited. Every chunk is checked before a single byte of
its plaintext is written, and nothing is written to the destination path until the whole file
has authenticated (atomic rename), so a tampered file never yields partial output.
"""

from __future__ import annotations

import base64
import binascii
import os
import struct
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"WGENC\x00"
VERSION = 1
HEADER = struct.Struct("<6sBBI16s")
TAG = 16
DEFAULT_CHUNK = 1024 * 1024
MAX_CHUNK = 64 * 1024 * 1024


class EncryptionError(Exception):
    """Bad key, tampered or truncated ciphertext, or not an encrypted file."""


class KeyProvider(Protocol):
    """Where a master key comes from; a KMS client implements this (``get_key``)."""

    def get_key(self) -> bytes: ...


def parse_key(text: bytes) -> bytes:
    """32 raw bytes, 64 hex characters, or base64 of 32 bytes (whitespace ignored)."""
    if len(text) == 32:
        return text
    stripped = text.strip()
    for decode in (bytes.fromhex, base64.b64decode):
        try:
            key = decode(stripped.decode("ascii"))
        except (ValueError, binascii.Error, UnicodeDecodeError):
            continue
        if len(key) == 32:
            return key
    raise EncryptionError("a key must be 32 bytes: raw, 64 hex characters, or base64")


def load_key(
    *,
    key_file: str | os.PathLike[str] | None = None,
    key_env: str | None = None,
    provider: KeyProvider | None = None,
) -> bytes:
    """The master key from a KMS provider, an environment variable or a file (never logged)."""
    if provider is not None:
        return parse_key(provider.get_key())
    if key_env:
        value = os.environ.get(key_env)
        if not value:
            raise EncryptionError(f"environment variable {key_env} is not set")
        return parse_key(value.encode())
    if key_file:
        path = Path(key_file)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise EncryptionError(f"cannot read key file {path}: {exc.strerror}") from exc
        return parse_key(data)
    raise EncryptionError("no key given: use a key file or an environment variable")


def generate_key() -> bytes:
    return os.urandom(32)


def _file_key(master: bytes, salt: bytes) -> AESGCM:
    if len(master) != 32:
        raise EncryptionError("the master key must be 32 bytes")
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=salt, info=b"wardgate-weights-v1"
    ).derive(master)
    return AESGCM(derived)


def _nonce(index: int, last: bool) -> bytes:
    return struct.pack("<Q3xB", index, 1 if last else 0)


def is_encrypted(path: str | os.PathLike[str]) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def encrypt_stream(
    source: IO[bytes], sink: IO[bytes], key: bytes, chunk_size: int = DEFAULT_CHUNK
) -> None:
    if not 1024 <= chunk_size <= MAX_CHUNK:
        raise EncryptionError("chunk size must be between 1 KiB and 64 MiB")
    salt = os.urandom(16)
    header = HEADER.pack(MAGIC, VERSION, 0, chunk_size, salt)
    aead = _file_key(key, salt)
    sink.write(header)
    index = 0
    current = source.read(chunk_size)
    while True:
        following = source.read(chunk_size) if len(current) == chunk_size else b""
        last = not following
        sink.write(aead.encrypt(_nonce(index, last), current, header))
        if last:
            return
        current = following
        index += 1


def decrypt_chunks(source: IO[bytes], key: bytes) -> Iterator[bytes]:
    """Yield authenticated plaintext chunks; raise EncryptionError on any tampering."""
    raw = source.read(HEADER.size)
    if len(raw) < HEADER.size:
        raise EncryptionError("not a Wardgate-encrypted file (too short)")
    magic, version, _, chunk_size, salt = HEADER.unpack(raw)
    if magic != MAGIC:
        raise EncryptionError("not a Wardgate-encrypted file (bad magic)")
    if version != VERSION:
        raise EncryptionError(f"unsupported encryption format version {version}")
    if not 1024 <= chunk_size <= MAX_CHUNK:
        raise EncryptionError("corrupt header (chunk size)")
    aead = _file_key(key, salt)
    block = chunk_size + TAG
    index = 0
    current = source.read(block)
    while True:
        if len(current) < TAG:
            raise EncryptionError("ciphertext is truncated")
        following = source.read(block) if len(current) == block else b""
        last = not following
        try:
            yield aead.decrypt(_nonce(index, last), current, raw)
        except InvalidTag as exc:
            if last:
                raise EncryptionError(
                    "authentication failed: wrong key, tampered data, or a truncated file"
                ) from exc
            raise EncryptionError("authentication failed: wrong key or tampered data") from exc
        if last:
            return
        current = following
        index += 1


def decrypt_stream(source: IO[bytes], sink: IO[bytes], key: bytes) -> int:
    written = 0
    for chunk in decrypt_chunks(source, key):
        sink.write(chunk)
        written += len(chunk)
    return written


def _atomic(dst: Path, mode: int, fill: Callable[[IO[bytes]], object]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".part", dir=dst.parent or ".")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            fill(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def encrypt_file(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    key: bytes,
    chunk_size: int = DEFAULT_CHUNK,
) -> None:
    """Encrypt ``src`` to ``dst`` (0600); ``dst`` appears only when complete."""
    with open(src, "rb") as source:
        _atomic(Path(dst), 0o600, lambda sink: encrypt_stream(source, sink, key, chunk_size))


def decrypt_file(src: str | os.PathLike[str], dst: str | os.PathLike[str], key: bytes) -> None:
    """Decrypt ``src`` to ``dst`` (0600); on any failure ``dst`` is never created."""
    with open(src, "rb") as source:
        _atomic(Path(dst), 0o600, lambda sink: decrypt_stream(source, sink, key))
