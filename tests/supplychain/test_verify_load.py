"""The gateway hook: verify before load, decrypt to tmpfs, audit templates, wipe after."""

from __future__ import annotations

import hashlib
import logging
import os
import struct
from pathlib import Path

import pytest

from wardgate.config import VerifyConfig
from wardgate.embedded import embedded_model_path
from wardgate.errors import ModelVerificationFailed
from wardgate.supplychain.encryption import encrypt_file
from wardgate.supplychain.signing import generate_key_pair, sign_model
from wardgate.supplychain.verify_load import _tmpfs_dir, prepare_model_file

KEY_HEX = bytes(range(32)).hex()

needs_tmpfs = pytest.mark.skipif(_tmpfs_dir() is None, reason="no memory-backed /dev/shm here")


def gguf_bytes(template: str | None, extra: dict[str, str] | None = None) -> bytes:
    """A minimal valid GGUF v3 header with string metadata and no tensors."""
    kv = {"general.name": "tiny"}
    if template is not None:
        kv["tokenizer.chat_template"] = template
    kv.update(extra or {})
    out = b"GGUF" + struct.pack("<IQQ", 3, 0, len(kv))
    for key, value in kv.items():
        k, v = key.encode(), value.encode()
        out += struct.pack("<Q", len(k)) + k + struct.pack("<I", 8) + struct.pack("<Q", len(v)) + v
    return out


def enter(path: Path, cfg: VerifyConfig, **kwargs) -> Path:
    with prepare_model_file(path, cfg, **kwargs) as plaintext:
        return plaintext


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.gguf"
    path.write_bytes(gguf_bytes("{{ messages[0]['content'] }}"))
    return path


def test_pinned_digest_accepts_and_rejects(tiny):
    good = hashlib.sha256(tiny.read_bytes()).hexdigest()
    with prepare_model_file(tiny, VerifyConfig(sha256=good.upper())) as path:
        assert path == tiny
    with pytest.raises(ModelVerificationFailed, match="does not match the pinned"):
        enter(tiny, VerifyConfig(sha256="0" * 64))


def test_require_signature_without_signature_refuses(tiny):
    with pytest.raises(ModelVerificationFailed, match="require_signature"):
        enter(tiny, VerifyConfig(require_signature=True))


def test_signature_without_trust_anchor_refuses(tiny, tmp_path):
    with pytest.raises(ModelVerificationFailed, match="no trusted public_key"):
        enter(tiny, VerifyConfig(signature=str(tmp_path / "x.sig")))


def test_signature_verifies_and_tamper_fails(tiny, tmp_path):
    generate_key_pair(tmp_path / "k.pem", tmp_path / "k.pub")
    sig = tmp_path / "tiny.sig"
    sign_model(tiny, sig, private_key=tmp_path / "k.pem")
    cfg = VerifyConfig(
        signature=str(sig), public_key=str(tmp_path / "k.pub"), require_signature=True
    )
    with prepare_model_file(tiny, cfg) as path:
        assert path == tiny
    tiny.write_bytes(tiny.read_bytes() + b"\x00")
    with pytest.raises(ModelVerificationFailed, match="do not match what was signed"):
        enter(tiny, cfg)


def test_missing_file(tmp_path):
    with pytest.raises(ModelVerificationFailed, match="not found"):
        enter(tmp_path / "nope.gguf", VerifyConfig())


@needs_tmpfs
def test_encrypted_model_is_decrypted_to_tmpfs_and_wiped(tiny, tmp_path, monkeypatch):
    enc = tmp_path / "tiny.gguf.enc"
    encrypt_file(tiny, enc, bytes.fromhex(KEY_HEX))
    monkeypatch.setenv("WG_TEST_DECRYPT_KEY", KEY_HEX)
    cfg = VerifyConfig(
        sha256=hashlib.sha256(tiny.read_bytes()).hexdigest(),
        decryption_key_env="WG_TEST_DECRYPT_KEY",
    )
    with prepare_model_file(enc, cfg) as path:
        assert path.name == "tiny.gguf"
        assert str(path).startswith("/dev/shm/")
        assert path.stat().st_mode & 0o777 == 0o600
        assert path.parent.stat().st_mode & 0o777 == 0o700
        assert path.read_bytes() == tiny.read_bytes()
        seen = path
    assert not seen.exists() and not seen.parent.exists()


def test_encrypted_without_key_or_with_wrong_key(tiny, tmp_path, monkeypatch):
    enc = tmp_path / "tiny.gguf.enc"
    encrypt_file(tiny, enc, bytes.fromhex(KEY_HEX))
    with pytest.raises(ModelVerificationFailed, match="no decryption_key"):
        enter(enc, VerifyConfig())
    key_file = tmp_path / "wrong.key"
    key_file.write_text("ab" * 32)
    with pytest.raises(ModelVerificationFailed, match="cannot decrypt"):
        enter(enc, VerifyConfig(decryption_key_file=str(key_file)))
    assert not [p for p in Path("/dev/shm").glob("wardgate-model-*") if (p / "tiny.gguf").exists()]


@needs_tmpfs
def test_signature_is_checked_on_the_plaintext_of_an_encrypted_model(tiny, tmp_path):
    generate_key_pair(tmp_path / "k.pem", tmp_path / "k.pub")
    sig = tmp_path / "tiny.sig"
    sign_model(tiny, sig, private_key=tmp_path / "k.pem")
    key_file = tmp_path / "model.key"
    key_file.write_text(KEY_HEX)
    enc = tmp_path / "tiny.gguf.enc"
    encrypt_file(tiny, enc, bytes.fromhex(KEY_HEX))
    cfg = VerifyConfig(
        signature=str(sig),
        public_key=str(tmp_path / "k.pub"),
        require_signature=True,
        decryption_key_file=str(key_file),
    )
    with prepare_model_file(enc, cfg) as path:
        assert path.read_bytes() == tiny.read_bytes()


def test_poisoned_template_warns_by_default_and_fails_when_asked(tmp_path, caplog):
    path = tmp_path / "evil.gguf"
    path.write_bytes(gguf_bytes("{{ cycler.__init__.__globals__.os.popen('id').read() }}"))
    found = []
    with caplog.at_level(logging.WARNING, logger="wardgate.supplychain"):
        enter(path, VerifyConfig(), on_findings=found.extend)
    assert {f.code for f in found} >= {"template.dunder_access", "template.gadget_global"}
    assert "template.dunder_access" in caplog.text
    with pytest.raises(ModelVerificationFailed, match="chat template audit failed"):
        enter(path, VerifyConfig(), template_policy="fail")


def test_pinned_template_digest(tiny):
    with pytest.raises(ModelVerificationFailed, match="digest_mismatch"):
        enter(tiny, VerifyConfig(), template_policy="fail", pinned_template_sha256="0" * 64)


@pytest.mark.slow
@needs_tmpfs
def test_encrypted_embedded_smollm2_loads_through_llama_cpp(tmp_path):
    """End to end: the shipped GGUF, encrypted at rest, verified and loaded by llama.cpp."""
    llama_cpp = pytest.importorskip("llama_cpp")
    source = embedded_model_path()
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    enc = tmp_path / f"{source.name}.enc"
    key_file = tmp_path / "model.key"
    key_file.write_text(KEY_HEX)
    os.chmod(key_file, 0o600)
    encrypt_file(source, enc, bytes.fromhex(KEY_HEX))
    cfg = VerifyConfig(sha256=digest, decryption_key_file=str(key_file))
    findings = []
    with prepare_model_file(enc, cfg, template_policy="fail", on_findings=findings.extend) as path:
        assert path.parent.parent == Path("/dev/shm")
        llm = llama_cpp.Llama(model_path=str(path), n_ctx=256, n_threads=1, verbose=False)
        out = llm.create_completion("The capital of France is", max_tokens=6, temperature=0)
        decrypted = path
    assert findings == []
    inside = out["choices"][0]["text"]
    assert inside.strip()
    assert not decrypted.exists()
    # The gateway keeps the model after the context exits: the weights must still be intact.
    after = llm.create_completion("The capital of France is", max_tokens=6, temperature=0)
    assert after["choices"][0]["text"] == inside
    del llm


def test_unmapped_plaintext_is_zeroed_before_unlink(tmp_path, monkeypatch):
    from wardgate.supplychain import verify_load

    target = tmp_path / "plain.bin"
    target.write_bytes(b"\x11" * 5000)
    seen: list[bytes] = []
    real_unlink = Path.unlink

    def spy(self, missing_ok=False):
        seen.append(self.read_bytes())
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", spy)
    verify_load._wipe(target)
    assert seen == [b"\x00" * 5000] and not target.exists()


@needs_tmpfs
def test_plaintext_only_goes_to_memory_backed_storage(tiny, tmp_path, monkeypatch):
    from wardgate.supplychain import verify_load

    assert verify_load._memory_backed("/dev/shm")
    assert not verify_load._memory_backed(str(tmp_path)) or str(tmp_path).startswith("/dev/shm")
    enc = tmp_path / "tiny.gguf.enc"
    encrypt_file(tiny, enc, bytes.fromhex(KEY_HEX))
    key_file = tmp_path / "k"
    key_file.write_text(KEY_HEX)
    monkeypatch.setattr(verify_load, "TMPFS_CANDIDATES", (str(tmp_path),))
    with pytest.raises(ModelVerificationFailed, match="no writable tmpfs"):
        enter(enc, VerifyConfig(decryption_key_file=str(key_file)))
