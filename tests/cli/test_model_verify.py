"""`wardgate model verify`: takes the digest `model hash --json` prints, says expected and
actual when they differ, and reports a tampered file's digests in hex (never a bytes repr)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from typer.testing import CliRunner

from wardgate.cli.main import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, ["model", *args], terminal_width=400)


def test_verify_accepts_the_top_level_digest_hash_prints_for_a_file_and_a_folder(
    tmp_path: Path,
) -> None:
    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"weights" * 1000)
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    for path in (weights, folder):
        printed = json.loads(run("hash", str(path), "--json").output)["sha256"]
        result = run("verify", str(path), "--sha256", printed)
        assert result.exit_code == 0, result.output
        assert result.output.startswith("OK  sha256")
    # ...and, for a single file, what sha256sum prints
    plain = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert run("verify", str(weights), "--sha256", plain.upper()).exit_code == 0


def test_a_mismatch_prints_expected_and_actual(tmp_path: Path) -> None:
    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"weights")
    expected = "ab" * 32
    result = run("verify", str(weights), "--sha256", expected)
    assert result.exit_code == 1
    actual = hashlib.sha256(b"weights").hexdigest()
    assert f"FAILED  sha256: expected {expected}, actual {actual}" in result.output
    assert run("verify", str(weights), "--sha256", "not-a-digest").exit_code == 2


def test_a_tampered_single_file_reports_hex_digests(tmp_path: Path) -> None:
    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"original weights")
    signed = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert run("keygen", str(tmp_path / "k.pem"), str(tmp_path / "k.pub")).exit_code == 0
    sig = tmp_path / "model.sig"
    signing = run("sign", str(weights), "--key", str(tmp_path / "k.pem"), "-o", str(sig))
    assert signing.exit_code == 0
    weights.write_bytes(b"tampered weights")
    now = hashlib.sha256(weights.read_bytes()).hexdigest()
    result = run("verify", str(weights), "-s", str(sig), "--public-key", str(tmp_path / "k.pub"))
    assert result.exit_code == 1
    assert f"changed: model.gguf (signed sha256 {signed}, now {now})" in result.output
    assert "b'" not in result.output and 'b"' not in result.output and "\\x" not in result.output
    assert not re.search(r"Digest\(", result.output)
