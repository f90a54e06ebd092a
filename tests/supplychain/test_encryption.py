"""AES-256-GCM chunked encryption: round trip, tamper, truncation, keys, constant memory."""

from __future__ import annotations

import io
import os
import struct

import pytest

from wardgate.supplychain.encryption import (
    HEADER,
    TAG,
    EncryptionError,
    decrypt_file,
    decrypt_stream,
    encrypt_file,
    encrypt_stream,
    is_encrypted,
    load_key,
    parse_key,
)

KEY = bytes(range(32))


def _enc(data: bytes, chunk: int = 1024) -> bytes:
    out = io.BytesIO()
    encrypt_stream(io.BytesIO(data), out, KEY, chunk)
    return out.getvalue()


def _dec(blob: bytes, key: bytes = KEY) -> bytes:
    out = io.BytesIO()
    decrypt_stream(io.BytesIO(blob), out, key)
    return out.getvalue()


@pytest.mark.parametrize("size", [0, 1, 1023, 1024, 1025, 4096, 5000])
def test_round_trip_at_chunk_boundaries(size):
    data = os.urandom(size)
    blob = _enc(data)
    assert blob.startswith(b"WGENC\x00")
    assert _dec(blob) == data
    chunks = max(1, -(-size // 1024))  # ceil, and an empty file is one (empty) chunk
    assert len(blob) == HEADER.size + size + TAG * chunks


def test_same_plaintext_encrypts_differently():
    assert _enc(b"x" * 100) != _enc(b"x" * 100)


def test_wrong_key_is_rejected():
    with pytest.raises(EncryptionError, match="authentication failed"):
        _dec(_enc(b"secret weights"), key=bytes(32))


def test_flipped_bit_anywhere_is_rejected():
    blob = bytearray(_enc(os.urandom(3000)))
    for index in (HEADER.size - 1, HEADER.size + 5, len(blob) - 1, 10):
        tampered = bytearray(blob)
        tampered[index] ^= 0x01
        with pytest.raises(EncryptionError):
            _dec(bytes(tampered))


def test_truncation_at_chunk_boundary_is_detected():
    data = os.urandom(4096)
    blob = _enc(data)  # four full chunks
    cut = HEADER.size + 3 * (1024 + TAG)
    with pytest.raises(EncryptionError, match=r"truncated|authentication"):
        _dec(blob[:cut])


def test_truncation_mid_chunk_and_reordering_are_detected():
    blob = _enc(os.urandom(4096))
    with pytest.raises(EncryptionError):
        _dec(blob[:-7])
    block = 1024 + TAG
    first = HEADER.size
    swapped = blob[:first] + blob[first + block : first + 2 * block] + blob[first : first + block]
    swapped += blob[first + 2 * block :]
    with pytest.raises(EncryptionError):
        _dec(swapped)


def test_header_edit_is_detected():
    blob = bytearray(_enc(os.urandom(2048)))
    magic, version, reserved, chunk, _salt = HEADER.unpack_from(blob)
    blob[: HEADER.size] = HEADER.pack(magic, version, reserved, chunk, bytes(16))
    with pytest.raises(EncryptionError):
        _dec(bytes(blob))


def test_not_encrypted_input():
    with pytest.raises(EncryptionError, match="not a Wardgate-encrypted"):
        _dec(b"GGUF" + b"\x00" * 100)


def test_file_helpers_never_leave_partial_output(tmp_path):
    src = tmp_path / "w.gguf"
    src.write_bytes(os.urandom(300_000))
    enc = tmp_path / "w.gguf.enc"
    encrypt_file(src, enc, KEY, chunk_size=64 * 1024)
    assert is_encrypted(enc) and not is_encrypted(src)
    assert enc.stat().st_mode & 0o777 == 0o600
    out = tmp_path / "plain.gguf"
    decrypt_file(enc, out, KEY)
    assert out.read_bytes() == src.read_bytes()
    broken = tmp_path / "broken.enc"
    broken.write_bytes(enc.read_bytes()[:-100])
    target = tmp_path / "never.gguf"
    with pytest.raises(EncryptionError):
        decrypt_file(broken, target, KEY)
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []


def test_key_formats_and_sources(tmp_path, monkeypatch):
    assert parse_key(KEY) == KEY
    assert parse_key(KEY.hex().encode() + b"\n") == KEY
    import base64

    assert parse_key(base64.b64encode(KEY)) == KEY
    with pytest.raises(EncryptionError):
        parse_key(b"short")
    key_file = tmp_path / "k"
    key_file.write_text(KEY.hex())
    assert load_key(key_file=key_file) == KEY
    monkeypatch.setenv("WG_TEST_MODEL_KEY", base64.b64encode(KEY).decode())
    assert load_key(key_env="WG_TEST_MODEL_KEY") == KEY
    with pytest.raises(EncryptionError, match="not set"):
        load_key(key_env="WG_TEST_UNSET_KEY_VAR")
    with pytest.raises(EncryptionError, match="cannot read"):
        load_key(key_file=tmp_path / "missing")

    class FakeKms:
        def get_key(self) -> bytes:
            return KEY.hex().encode()

    assert load_key(provider=FakeKms()) == KEY


def test_streaming_uses_constant_memory(tmp_path):
    """Encrypting 64 MiB must not allocate anywhere near 64 MiB at once."""
    import tracemalloc

    src = tmp_path / "big"
    with open(src, "wb") as handle:
        block = os.urandom(1024 * 1024)
        for _ in range(64):
            handle.write(block)
    tracemalloc.start()
    encrypt_file(src, tmp_path / "big.enc", KEY)
    decrypt_file(tmp_path / "big.enc", tmp_path / "big.out", KEY)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 8 * 1024 * 1024, peak
    assert struct.unpack("<I", (tmp_path / "big.enc").read_bytes()[8:12])[0] == 1024 * 1024
