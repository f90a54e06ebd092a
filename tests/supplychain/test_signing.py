"""Hash, sign and verify in the OpenSSF model-signing format, with keys and certificates."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from wardgate.errors import ModelVerificationFailed
from wardgate.supplychain.hashing import hash_model, sha256_file
from wardgate.supplychain.signing import generate_key_pair, sign_model, verify_model


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "weights.bin").write_bytes(bytes(range(256)) * 4096)
    (folder / "config.json").write_text('{"a": 1}')
    (folder / "sub" / "tokenizer.json").write_text("{}")
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD").write_text("ref")
    return folder


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    private, public = tmp_path / "key.pem", tmp_path / "key.pub"
    generate_key_pair(private, public)
    return private, public


def test_hash_matches_model_signing_manifest(model_dir):
    from model_signing import hashing

    ours = hash_model(model_dir)
    theirs = hashing.hash(model_dir)
    expected = {rd.identifier: rd.digest.digest_hex for rd in theirs.resource_descriptors()}
    assert {f.name: f.sha256 for f in ours.files} == expected
    assert [f.name for f in ours.files] == ["config.json", "sub/tokenizer.json", "weights.bin"]


def test_sha256_file_matches_hashlib(tmp_path):
    import hashlib

    data = b"x" * (9 * 1024 * 1024 + 7)
    path = tmp_path / "f"
    path.write_bytes(data)
    assert sha256_file(path) == (hashlib.sha256(data).hexdigest(), len(data))


def test_private_key_file_is_0600(keys):
    assert keys[0].stat().st_mode & 0o777 == 0o600


def test_sign_and_verify_folder_with_key(model_dir, keys, tmp_path):
    sig = tmp_path / "model.sig"
    sign_model(model_dir, sig, private_key=keys[0])
    bundle = json.loads(sig.read_text())
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["subject"][0]["digest"]["sha256"] == hash_model(model_dir).root
    result = verify_model(model_dir, sig, public_key=keys[1])
    assert result.method == "public-key" and result.files == 3


def test_verify_with_upstream_model_signing_api(model_dir, keys, tmp_path):
    """Interoperability: model_signing's own verifier accepts our signature."""
    from model_signing import verifying

    sig = tmp_path / "model.sig"
    sign_model(model_dir, sig, private_key=keys[0])
    verifying.Config().use_elliptic_key_verifier(public_key=keys[1]).verify(model_dir, sig)


def test_tampered_file_fails_with_reason(model_dir, keys, tmp_path):
    sig = tmp_path / "model.sig"
    sign_model(model_dir, sig, private_key=keys[0])
    (model_dir / "config.json").write_text('{"a": 2}')
    with pytest.raises(ModelVerificationFailed, match="do not match what was signed"):
        verify_model(model_dir, sig, public_key=keys[1])


def test_added_file_fails(model_dir, keys, tmp_path):
    sig = tmp_path / "model.sig"
    sign_model(model_dir, sig, private_key=keys[0])
    (model_dir / "extra.py").write_text("import os")
    with pytest.raises(ModelVerificationFailed):
        verify_model(model_dir, sig, public_key=keys[1])


def test_wrong_key_fails(model_dir, keys, tmp_path):
    sig = tmp_path / "model.sig"
    sign_model(model_dir, sig, private_key=keys[0])
    other_private, other_public = tmp_path / "o.pem", tmp_path / "o.pub"
    generate_key_pair(other_private, other_public)
    with pytest.raises(ModelVerificationFailed, match="trusted key"):
        verify_model(model_dir, sig, public_key=other_public)


def test_no_trust_anchor_is_refused(model_dir, keys, tmp_path):
    sig = tmp_path / "model.sig"
    sign_model(model_dir, sig, private_key=keys[0])
    with pytest.raises(ModelVerificationFailed, match="no trust anchor"):
        verify_model(model_dir, sig)


def _cert(subject: str, key, issuer_name, issuer_key, *, ca: bool) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
    else:
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), True
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), False)
    return builder.sign(issuer_key, hashes.SHA256())


def test_certificate_signing_and_chain_verification(model_dir, tmp_path):
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Wardgate Test CA")])
    ca = _cert("Wardgate Test CA", ca_key, ca_name, ca_key, ca=True)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = _cert("model signer", leaf_key, ca_name, ca_key, ca=False)
    pem = serialization.Encoding.PEM
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(pem))
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(pem))
    (tmp_path / "leaf.key").write_bytes(
        leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    sig = tmp_path / "model.sig"
    sign_model(
        model_dir,
        sig,
        private_key=tmp_path / "leaf.key",
        certificate=tmp_path / "leaf.pem",
        certificate_chain=[tmp_path / "ca.pem"],
    )
    result = verify_model(model_dir, sig, certificate_chain=[tmp_path / "ca.pem"])
    assert result.method == "certificate"
    other_key = ec.generate_private_key(ec.SECP256R1())
    other_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Other CA")])
    other = _cert("Other CA", other_key, other_name, other_key, ca=True)
    (tmp_path / "other.pem").write_bytes(other.public_bytes(pem))
    with pytest.raises(ModelVerificationFailed):
        verify_model(model_dir, sig, certificate_chain=[tmp_path / "other.pem"])


def test_failed_sign_leaves_no_signature_file(model_dir, tmp_path):
    bad_key = tmp_path / "bad.pem"
    bad_key.write_text("not a key")
    from wardgate.supplychain.signing import SigningError

    with pytest.raises(SigningError):
        sign_model(model_dir, tmp_path / "out.sig", private_key=bad_key)
    assert not (tmp_path / "out.sig").exists()
    assert list(tmp_path.glob("*.tmp")) == []
