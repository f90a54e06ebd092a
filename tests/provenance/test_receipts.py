"""Receipts: sign, verify offline, and detect tampering with the receipt, content or key."""

from __future__ import annotations

import base64
import json
import os
import stat
import time
from pathlib import Path

import pytest
import rfc8785
from joserfc import jws
from joserfc.jwk import OKPKey
from typer.testing import CliRunner

from wardgate.cli.main import app
from wardgate.errors import ConfigError
from wardgate.provenance import receipts
from wardgate.provenance.config import ReceiptsConfig
from wardgate.provenance.receipts import (
    ReceiptInvalid,
    ReceiptSigner,
    canonical_json,
    messages_digest,
    verify_receipt,
)
from wardgate.provenance.signing_keys import SigningKeys, keyset_from_jwks, write_private_key

CONTENT = "The capital of France is Paris."


def _sign(signer: ReceiptSigner, content: str = CONTENT) -> str:
    return signer.sign(
        audit_request_id="chatcmpl-abc",
        model="smol",
        backend="smol",
        weights={"sha256": "ab" * 32, "check": "pinned"},
        request_sha256=messages_digest([("user", "Capital of France?")]),
        content=content,
        finish_reason="stop",
        usage={"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
        watermark=None,
    )


@pytest.fixture
def keys(tmp_path: Path) -> SigningKeys:
    return SigningKeys.load(ReceiptsConfig(key_env="WG_TEST_NO_VAR"), tmp_path)


def test_key_is_created_once_0600_and_reused(tmp_path: Path) -> None:
    cfg = ReceiptsConfig(key_env="WG_TEST_NO_VAR")
    first = SigningKeys.load(cfg, tmp_path)
    path = tmp_path / "receipt-key.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert SigningKeys.load(cfg, tmp_path).kid == first.kid
    # The kid is the RFC 7638 thumbprint a verifier can recompute from the JWKS.
    assert first.kid == OKPKey.import_key(first.jwks()["keys"][0]).thumbprint()


def test_world_readable_key_is_refused(tmp_path: Path) -> None:
    write_private_key(tmp_path / "receipt-key.pem")
    os.chmod(tmp_path / "receipt-key.pem", 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        SigningKeys.load(ReceiptsConfig(key_env="WG_TEST_NO_VAR"), tmp_path)


def test_key_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_private_key(tmp_path / "k.pem")
    monkeypatch.setenv("WG_TEST_RECEIPT_KEY", (tmp_path / "k.pem").read_text())
    keys = SigningKeys.load(ReceiptsConfig(key_env="WG_TEST_RECEIPT_KEY"), tmp_path / "none")
    assert keys.kid == OKPKey.import_key((tmp_path / "k.pem").read_bytes()).thumbprint()
    assert not (tmp_path / "none").exists()


def test_payload_fields_and_round_trip(keys: SigningKeys) -> None:
    token = _sign(ReceiptSigner(keys))
    checked = verify_receipt(token, keyset_from_jwks(keys.jwks()), content=CONTENT)
    p = checked.payload
    assert checked.content_matches is True
    assert p["kid"] == keys.kid and p["audit_request_id"] == "chatcmpl-abc"
    assert p["weights"]["sha256"] == "ab" * 32
    assert p["usage"]["total_tokens"] == 12 and p["finish_reason"] == "stop"
    assert abs(p["iat"] - time.time()) < 5
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header["alg"] == "Ed25519" and header["kid"] == keys.kid
    # The signed bytes are RFC 8785 canonical JSON: sorted keys, no whitespace.
    raw = base64.urlsafe_b64decode(token.split(".")[1] + "==")
    assert raw == json.dumps(p, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


#: Every code point but the surrogates, in one string: JSON escaping is per character.
_ALL_CHARS = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)


@pytest.mark.parametrize(
    "value",
    [
        _ALL_CHARS,
        {_ALL_CHARS[:200]: _ALL_CHARS[:200]},  # ASCII keys, controls and quotes included
        [chr(c) for c in range(0x20)] + ['"', "\\", "\x7f", "\u2028", "\u2029", "\ufeff"],
        {"b": [1, -2, 2**53 - 1, -(2**53) + 1, True, False, None], "a": {"z": {}, "y": []}},
        ("a", ("b", 1)),  # tuples are arrays
        # The rfc8785 fallback: floats, non-ASCII keys (UTF-16 order), unsafe integers.
        {"gamma": 0.25, "delta": 2.0, "big": 1e21, "small": 1e-7, "neg": -0.0},
        {"\ue000": 1, "\U0001f600": 2, "é": 3, "z": 4},
        [2**53],
        # The fast-path check walks a stack, not the call stack: deep nesting, a float or a
        # non-ASCII key found deep down, and a structure too large to check.
        [[[[[[[[[[{"a": [1, {"b": "c"}]}]]]]]]]]]],
        {"a": [{"b": [{"c": [1, 2, 0.5]}]}]},
        {"a": [{"b": [{"ключ": 1}]}]},
        list(range(100_001)),
    ],
)
def test_canonical_json_is_rfc8785_byte_for_byte(value: object) -> None:
    try:
        expected: bytes | type[Exception] = rfc8785.dumps(value)  # type: ignore[arg-type]
    except rfc8785.CanonicalizationError as exc:
        expected = type(exc)
    if isinstance(expected, bytes):
        assert canonical_json(value) == expected
    else:
        with pytest.raises(expected):
            canonical_json(value)


def test_the_fast_path_check_is_not_recursive() -> None:
    deep: list[object] = []
    inner = deep
    for _ in range(5000):  # deeper than Python's recursion limit
        inner.append([])
        inner = inner[0]  # type: ignore[assignment]
    assert receipts._plain(deep)
    cyclic: dict[str, object] = {}
    cyclic["self"] = cyclic
    assert not receipts._plain(cyclic)  # gives up; rfc8785 decides (and refuses)


def test_canonical_json_refuses_what_rfc8785_refuses() -> None:
    for value in ["lone \ud800 surrogate", {"k": float("nan")}, {1: "int key"}, object()]:
        with pytest.raises(rfc8785.CanonicalizationError):
            canonical_json(value)


def test_receipt_is_the_jws_joserfc_would_build(keys: SigningKeys) -> None:
    """The compact JWS is assembled directly; Ed25519 is deterministic, so it must equal
    joserfc's ``serialize_compact`` of the same header and canonical payload, bit for bit."""
    signer = ReceiptSigner(keys)
    payload = {"v": 1, "kid": keys.kid, "text": "é\n\u2028", "watermark": {"gamma": 0.25}}
    header = {"alg": "Ed25519", "kid": keys.kid, "typ": "wardgate-receipt+jws"}
    expected = jws.serialize_compact(
        header, rfc8785.dumps(payload), keys.active, algorithms=["Ed25519"]
    )
    assert signer.sign_payload(payload) == expected
    assert verify_receipt(expected, keyset_from_jwks(keys.jwks())).payload == payload


def test_tampered_payload_fails(keys: SigningKeys) -> None:
    token = _sign(ReceiptSigner(keys))
    head, body, sig = token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=="))
    payload["model"] = "gpt-4o"
    forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    with pytest.raises(ReceiptInvalid) as err:
        verify_receipt(f"{head}.{forged}.{sig}", keyset_from_jwks(keys.jwks()))
    assert err.value.code == "receipt_bad_signature"
    flipped = sig[:10] + ("A" if sig[10] != "A" else "B") + sig[11:]
    with pytest.raises(ReceiptInvalid, match="signature"):
        verify_receipt(f"{head}.{body}.{flipped}", keyset_from_jwks(keys.jwks()))


def test_tampered_content_fails(keys: SigningKeys) -> None:
    token = _sign(ReceiptSigner(keys))
    with pytest.raises(ReceiptInvalid) as err:
        verify_receipt(token, keyset_from_jwks(keys.jwks()), content=CONTENT + " ")
    assert err.value.code == "receipt_content_mismatch"


def test_other_key_fails(keys: SigningKeys, tmp_path: Path) -> None:
    token = _sign(ReceiptSigner(keys))
    other = SigningKeys.from_keys(OKPKey.generate_key("Ed25519"))
    with pytest.raises(ReceiptInvalid) as err:
        verify_receipt(token, keyset_from_jwks(other.jwks()))
    assert err.value.code == "receipt_unknown_key"
    # An attacker who swaps in their own key under the original kid still fails.
    impostor = other.jwks()
    impostor["keys"][0]["kid"] = keys.kid
    with pytest.raises(ReceiptInvalid):
        verify_receipt(token, keyset_from_jwks(impostor))
    # And a receipt signed by a different key claiming our kid fails the signature.
    attacker = ReceiptSigner(SigningKeys(active=other.active, kid=keys.kid, published=()))
    with pytest.raises(ReceiptInvalid) as err:
        verify_receipt(_sign(attacker), keyset_from_jwks(keys.jwks()))
    assert err.value.code == "receipt_bad_signature"


def test_garbage_is_malformed(keys: SigningKeys) -> None:
    for bad in ["", "abc", "a.b.c", "eyJhbGciOiJub25lIn0.e30."]:
        with pytest.raises(ReceiptInvalid) as err:
            verify_receipt(bad, keyset_from_jwks(keys.jwks()))
        assert err.value.code == "receipt_malformed"


def test_rotation_publishes_old_keys(tmp_path: Path) -> None:
    old_cfg = ReceiptsConfig(key_env="WG_TEST_NO_VAR", key_file=str(tmp_path / "old.pem"))
    old = SigningKeys.load(old_cfg, tmp_path)
    old_receipt = _sign(ReceiptSigner(old))
    write_private_key(tmp_path / "new.pem")
    new_cfg = ReceiptsConfig(
        key_env="WG_TEST_NO_VAR",
        key_file=str(tmp_path / "new.pem"),
        previous_keys=[str(tmp_path / "old.pem")],
    )
    new = SigningKeys.load(new_cfg, tmp_path)
    assert new.kid != old.kid
    jwks = new.jwks()
    assert {k["kid"] for k in jwks["keys"]} == {old.kid, new.kid}
    assert all("d" not in k for k in jwks["keys"])
    keyset = keyset_from_jwks(jwks)
    assert verify_receipt(old_receipt, keyset).kid == old.kid
    assert verify_receipt(_sign(ReceiptSigner(new)), keyset).kid == new.kid


def test_cli_verify(keys: SigningKeys, tmp_path: Path) -> None:
    token = _sign(ReceiptSigner(keys))
    (tmp_path / "jwks.json").write_text(json.dumps(keys.jwks()))
    (tmp_path / "answer.txt").write_text(CONTENT)
    (tmp_path / "wrong.txt").write_text("The capital of France is Lyon.")
    runner = CliRunner()
    jwks = ["--jwks", str(tmp_path / "jwks.json")]
    ok = runner.invoke(
        app, ["receipt", "verify", token, *jwks, "--content", str(tmp_path / "answer.txt")]
    )
    assert ok.exit_code == 0, ok.output
    assert "ok: signed by key" in ok.output and "matches" in ok.output
    bad = runner.invoke(
        app, ["receipt", "verify", token, *jwks, "--content", str(tmp_path / "wrong.txt")]
    )
    assert bad.exit_code == 1 and "receipt_content_mismatch" in bad.output
    (tmp_path / "r.jws").write_text(token + "\n")
    as_json = runner.invoke(app, ["receipt", "verify", str(tmp_path / "r.jws"), *jwks, "--json"])
    assert as_json.exit_code == 0 and json.loads(as_json.output)["payload"]["model"] == "smol"
    stdin = runner.invoke(app, ["receipt", "verify", "-", *jwks], input=token[:-4] + "AAAA")
    assert stdin.exit_code == 1 and "receipt_bad_signature" in stdin.output


def test_cli_keygen(tmp_path: Path) -> None:
    runner = CliRunner()
    out = runner.invoke(app, ["receipt", "keygen", str(tmp_path / "k.pem")])
    assert out.exit_code == 0 and "key id" in out.output
    assert stat.S_IMODE((tmp_path / "k.pem").stat().st_mode) == 0o600
    again = runner.invoke(app, ["receipt", "keygen", str(tmp_path / "k.pem")])
    assert again.exit_code == 1


def test_signing_cost_is_far_below_budget(keys: SigningKeys) -> None:
    signer = ReceiptSigner(keys)
    n = 300
    start = time.process_time()
    for _ in range(n):
        _sign(signer, CONTENT * 20)
    per_request = (time.process_time() - start) / n
    # Budget 0.3 ms CPU; assert with headroom for a shared, noisy machine.
    assert per_request < 0.3e-3 * 3, per_request
