"""Digest manifests for Wardgate's own shipped data."""

from __future__ import annotations

import pytest

from wardgate.errors import ModelVerificationFailed
from wardgate.supplychain.manifest import verify_manifest, write_manifest


def test_manifest_round_trip_and_tamper(tmp_path):
    (tmp_path / "detector").mkdir()
    (tmp_path / "detector" / "weights.npz").write_bytes(b"\x01" * 1000)
    (tmp_path / "suite.yaml").write_text("a: 1\n")
    write_manifest(tmp_path)
    assert verify_manifest(tmp_path) == 2
    (tmp_path / "suite.yaml").write_text("a: 2\n")
    with pytest.raises(ModelVerificationFailed, match=r"changed: suite\.yaml"):
        verify_manifest(tmp_path)
    write_manifest(tmp_path)
    (tmp_path / "extra.pkl").write_bytes(b"x")
    with pytest.raises(ModelVerificationFailed, match=r"not listed: extra\.pkl"):
        verify_manifest(tmp_path)
    assert verify_manifest(tmp_path, strict=False) == 2
    (tmp_path / "detector" / "weights.npz").unlink()
    with pytest.raises(ModelVerificationFailed, match=r"missing: detector/weights\.npz"):
        verify_manifest(tmp_path, strict=False)


def test_unreadable_manifest(tmp_path):
    with pytest.raises(ModelVerificationFailed, match="cannot read digest manifest"):
        verify_manifest(tmp_path)


def test_shipped_data_manifest_verifies():
    from pathlib import Path

    import wardgate

    data = Path(wardgate.__file__).parent / "data"
    if not (data / "MANIFEST.json").is_file():
        pytest.skip("no shipped data manifest in this checkout")
    assert verify_manifest(data, strict=False) >= 1


def test_list_shaped_manifest_is_accepted(tmp_path):
    import hashlib
    import json

    (tmp_path / "w.bin").write_bytes(b"abc")
    digest = hashlib.sha256(b"abc").hexdigest()
    (tmp_path / "MANIFEST.json").write_text(
        json.dumps({"files": [{"name": "w.bin", "sha256": digest, "size": 3}]})
    )
    assert verify_manifest(tmp_path) == 1
