"""CycloneDX 1.6 ML-BOM for configured models."""

from __future__ import annotations

import hashlib
import json

from wardgate.config import GatewayConfig, ModelConfig, VerifyConfig
from wardgate.embedded import embedded_model_path
from wardgate.supplychain.bom import build_bom
from wardgate.supplychain.signing import generate_key_pair, sign_model


def _props(component):
    return {p["name"]: p["value"] for p in component.get("properties", [])}


def _validate(bom):
    """Validate against the official 1.6 schema when the validator is installed
    (cyclonedx-python-lib[json-validation]); the structural assertions run regardless."""
    try:
        import jsonschema  # noqa: F401
        from cyclonedx.schema import SchemaVersion
        from cyclonedx.validation import json as validation
    except ImportError:
        return

    errors = validation.JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(bom))
    assert errors is None, errors


def test_embedded_and_vendor_models(tmp_path):
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(b"cos\nsystem\n(S'id'\ntR.")
    config = GatewayConfig(
        models=[
            ModelConfig(name="smollm2-135m"),
            ModelConfig(
                name="pinned-wrong",
                path=str(embedded_model_path()),
                verify=VerifyConfig(sha256="0" * 64),
            ),
            ModelConfig(name="evil", path=str(evil)),
            ModelConfig(
                name="gpt",
                backend="openai",
                base_url="https://api.openai.com/v1",
                upstream_model="gpt-4o",
                tags={"deployment": "vendor", "weights": "closed"},
            ),
        ]
    )
    bom = build_bom(config)
    _validate(bom)
    assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"] == "1.6"
    smol, wrong, bad, vendor = bom["components"]
    assert smol["type"] == "machine-learning-model"
    digest = hashlib.sha256(embedded_model_path().read_bytes()).hexdigest()
    assert smol["hashes"] == [{"alg": "SHA-256", "content": digest}]
    assert smol["licenses"] == [{"license": {"id": "Apache-2.0"}}]
    props = _props(smol)
    assert props["wardgate:format"] == "gguf"
    assert props["wardgate:quantization"] == "Q4_1"
    assert props["wardgate:scan"] == "clean"
    assert props["wardgate:signature"] == "unsigned"
    assert props["wardgate:load"] == "accepted"
    assert _props(wrong)["wardgate:digest_pin"] == "mismatch"
    assert _props(wrong)["wardgate:load"].startswith("refused")
    assert _props(bad)["wardgate:scan"].startswith("findings:")
    assert "wardgate:finding" in _props(bad)
    assert vendor["name"] == "gpt-4o"
    assert vendor["externalReferences"][0]["url"] == "https://api.openai.com/v1"
    refs = {d["ref"] for d in bom["dependencies"]}
    assert {"gateway", "model:evil"} <= refs


def test_signed_model_reports_verified(tmp_path):
    from tests.supplychain.test_verify_load import gguf_bytes

    model = tmp_path / "m.gguf"
    model.write_bytes(gguf_bytes("{{ messages[0]['content'] }}"))
    generate_key_pair(tmp_path / "k.pem", tmp_path / "k.pub")
    sign_model(model, tmp_path / "m.sig", private_key=tmp_path / "k.pem")
    verify = VerifyConfig(
        signature=str(tmp_path / "m.sig"),
        public_key=str(tmp_path / "k.pub"),
        require_signature=True,
    )
    bom = build_bom(GatewayConfig(models=[ModelConfig(name="m", path=str(model), verify=verify)]))
    _validate(bom)
    props = _props(bom["components"][0])
    assert props["wardgate:signature"] == "verified"
    assert props["wardgate:load"] == "accepted"


def test_missing_model_file(tmp_path):
    bom = build_bom(GatewayConfig(models=[ModelConfig(name="gone", path=str(tmp_path / "x.gguf"))]))
    _validate(bom)
    assert _props(bom["components"][0])["wardgate:status"] == "missing"
