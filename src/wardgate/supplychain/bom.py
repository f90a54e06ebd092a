"""A CycloneDX 1.6 ML-BOM for the models a gateway is configured to serve.

Why: an auditor (or the EU AI Act's technical documentation) asks "which weights, exactly, from
where, under which licence, and were they checked?". The BOM answers per model with the SHA-256,
the signature and pin status as the gateway itself would judge them at load time, the format and
quantisation read from the file, the licence and source from the GGUF metadata, and the scan
result. Vendor models appear too, as external services, so the inventory is complete.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wardgate.errors import ModelVerificationFailed
from wardgate.supplychain.findings import Finding

if TYPE_CHECKING:
    from wardgate.config import GatewayConfig, ModelConfig

#: GGUF ``general.license`` values to SPDX identifiers (CycloneDX wants SPDX ids in ``id``).
_SPDX = {
    "apache-2.0": "Apache-2.0",
    "mit": "MIT",
    "bsd-3-clause": "BSD-3-Clause",
    "cc-by-4.0": "CC-BY-4.0",
    "cc-by-sa-4.0": "CC-BY-SA-4.0",
    "cc-by-nc-4.0": "CC-BY-NC-4.0",
    "gpl-3.0": "GPL-3.0-only",
    "openrail": "OpenRAIL",
}
_SOURCE_KEYS = ("general.source.url", "general.url", "general.source.huggingface.repository")


def _wardgate_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("wardgate")
    except PackageNotFoundError:
        return "0.0.0"


def _prop(name: str, value: object) -> dict[str, str]:
    return {"name": f"wardgate:{name}", "value": str(value)}


def _licence(value: object) -> list[dict[str, Any]]:
    if not isinstance(value, str) or not value:
        return []
    spdx = _SPDX.get(value.lower())
    return [{"license": {"id": spdx}}] if spdx else [{"license": {"name": value}}]


def _local_component(model: ModelConfig) -> dict[str, Any]:
    from wardgate.embedded import embedded_model_path
    from wardgate.supplychain.encryption import is_encrypted
    from wardgate.supplychain.gguf_meta import GGUFFormatError, read_metadata_file
    from wardgate.supplychain.hashing import sha256_file
    from wardgate.supplychain.scan import scan_path
    from wardgate.supplychain.verify_load import prepare_model_file

    path = Path(model.path) if model.path else embedded_model_path()
    component: dict[str, Any] = {
        "type": "machine-learning-model",
        "bom-ref": f"model:{model.name}",
        "name": model.name,
    }
    props = [_prop("backend", model.backend), _prop("path", path)]
    props.append(_prop("deployment", model.deployment))
    if not path.is_file():
        props.append(_prop("status", "missing"))
        component["properties"] = props
        return component
    encrypted = is_encrypted(path)
    props.append(_prop("encrypted", str(encrypted).lower()))
    verify = model.verify
    template_findings: list[Finding] = []
    with contextlib.ExitStack() as stack:
        try:
            plaintext = stack.enter_context(
                prepare_model_file(path, verify, on_findings=template_findings.extend)
            )
            if verify.signature:
                signature = "verified"
            else:
                signature = "required-missing" if verify.require_signature else "unsigned"
            pin = "match" if verify.sha256 else "not-pinned"
            load = "accepted"
        except ModelVerificationFailed as exc:
            plaintext = path
            signature = "failed" if verify.signature else "unsigned"
            pin = "mismatch" if verify.sha256 and "pinned" in exc.message else "unchecked"
            load = f"refused: {exc.message}"
        digest, size = sha256_file(plaintext)
        component["hashes"] = [{"alg": "SHA-256", "content": digest}]
        props += [
            _prop("size_bytes", size),
            _prop("signature", signature),
            _prop("digest_pin", pin),
            _prop("load", load),
        ]
        if verify.signature:
            props.append(_prop("signature_file", verify.signature))
        report = scan_path(plaintext)
        fmt = (
            "encrypted"
            if plaintext == path and encrypted
            else ",".join(sorted(set(report.formats)))
        )
        props.append(_prop("format", fmt or "unknown"))
        scan_status = (
            f"findings:{len(report.findings)}" if report.status == "findings" else report.status
        )
        props.append(_prop("scan", scan_status))
        for finding in report.findings[:20]:
            props.append(_prop("finding", f"{finding.severity}:{finding.code}"))
        with contextlib.suppress(GGUFFormatError, OSError):
            if "gguf" in report.formats:
                meta = read_metadata_file(str(plaintext))
                kv = meta.kv
                if meta.quantization:
                    props.append(_prop("quantization", meta.quantization))
                component["licenses"] = _licence(kv.get("general.license"))
                if isinstance(kv.get("general.name"), str):
                    component["description"] = kv["general.name"]
                if isinstance(kv.get("general.organization"), str):
                    component["supplier"] = {"name": kv["general.organization"]}
                if isinstance(kv.get("general.version"), str):
                    component["version"] = kv["general.version"]
                for key in _SOURCE_KEYS:
                    if isinstance(kv.get(key), str) and kv[key]:
                        url = kv[key]
                        if not url.startswith(("http://", "https://")):
                            url = f"https://huggingface.co/{url}"
                        component["externalReferences"] = [{"type": "distribution", "url": url}]
                        break
                params: dict[str, Any] = {}
                if isinstance(kv.get("general.architecture"), str):
                    params["architectureFamily"] = kv["general.architecture"]
                    params["modelArchitecture"] = kv.get("general.size_label", "")
                component["modelCard"] = {
                    "modelParameters": params,
                    "properties": [
                        {"name": "gguf:version", "value": str(meta.version)},
                        {"name": "gguf:tensor_count", "value": str(meta.tensor_count)},
                    ],
                }
                for audit_finding in template_findings:
                    props.append(_prop("template_finding", audit_finding.code))
        if not component.get("licenses"):
            component.pop("licenses", None)
    component["properties"] = props
    return component


def _vendor_component(model: ModelConfig) -> dict[str, Any]:
    component: dict[str, Any] = {
        "type": "machine-learning-model",
        "bom-ref": f"model:{model.name}",
        "name": model.upstream_model or model.name,
        "properties": [
            _prop("backend", model.backend),
            _prop("deployment", model.deployment),
            _prop("weights", model.tags.weights),
            _prop("gateway_name", model.name),
        ],
    }
    if model.base_url:
        component["externalReferences"] = [{"type": "website", "url": model.base_url}]
    return component


def build_bom(config: GatewayConfig) -> dict[str, Any]:
    """The ML-BOM as a JSON-ready dict (CycloneDX 1.6)."""
    components = [
        _local_component(m) if m.backend == "llamacpp" else _vendor_component(m)
        for m in config.models
    ]
    return {
        "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": f"urn:uuid:{uuid.uuid4()}",
        "version": 1,
        "metadata": {
            "timestamp": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
            "tools": {
                "components": [
                    {"type": "application", "name": "wardgate", "version": _wardgate_version()}
                ]
            },
            "component": {"type": "application", "name": "wardgate-gateway", "bom-ref": "gateway"},
        },
        "components": components,
        "dependencies": [
            {"ref": "gateway", "dependsOn": [c["bom-ref"] for c in components]},
            *({"ref": c["bom-ref"]} for c in components),
        ],
    }
