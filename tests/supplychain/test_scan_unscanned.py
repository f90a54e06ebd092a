""""Not scanned" is not "clean" (finding 10 of the outside review).

Random bytes, a text file, an encrypted ``.enc`` file and an empty folder all reported
``clean … formats: unknown`` with exit 0.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from wardgate.cli.model import model_app
from wardgate.config import VerifyConfig
from wardgate.errors import ModelVerificationFailed
from wardgate.supplychain.encryption import encrypt_file, generate_key
from wardgate.supplychain.scan import ScanOptions, scan_path
from wardgate.supplychain.verify_load import prepare_model_file

EXIT_UNSCANNED = 3


def _random(tmp: Path) -> Path:
    path = tmp / "model.bin"
    path.write_bytes(b"\x00\xfe" + os.urandom(4096))
    return path


def _text(tmp: Path) -> Path:
    path = tmp / "weights.pt"
    path.write_text("these are not weights, just words\n" * 20)
    return path


def _encrypted(tmp: Path) -> Path:
    plain = tmp / "plain.gguf"
    plain.write_bytes(os.urandom(2048))
    out = tmp / "model.gguf.enc"
    encrypt_file(plain, out, generate_key())
    plain.unlink()
    return out


def _empty_folder(tmp: Path) -> Path:
    folder = tmp / "empty"
    folder.mkdir()
    return folder


CASES = {"random": _random, "text": _text, "encrypted": _encrypted, "empty-folder": _empty_folder}


@pytest.mark.parametrize("case", list(CASES))
def test_what_cannot_be_read_is_unscanned_not_clean(tmp_path: Path, case: str) -> None:
    path = CASES[case](tmp_path)
    report = scan_path(path)
    assert not report.clean
    assert report.status == "unscanned"
    assert report.unscanned
    result = CliRunner().invoke(model_app, ["scan", str(path), "--json"])
    assert result.exit_code == EXIT_UNSCANNED, result.output
    body = json.loads(result.output)
    assert body["status"] == "unscanned" and body["clean"] is False


def test_text_cli_names_the_status(tmp_path: Path) -> None:
    result = CliRunner().invoke(model_app, ["scan", str(_random(tmp_path))])
    assert result.exit_code == EXIT_UNSCANNED
    assert "UNSCANNED" in result.output and "clean" not in result.output.lower().split(":")[0]


def test_known_inert_extensions_are_allowed_and_configurable(tmp_path: Path) -> None:
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llama"}')
    (folder / "README.md").write_text("# a model\n")
    (folder / "merges.txt").write_text("a b\n")
    report = scan_path(folder)
    assert report.status == "clean", report.unscanned
    assert "text" in report.formats
    # An inert extension on binary content is not text: still unscanned.
    (folder / "vocab.txt").write_bytes(b"\x00\x01\x02binary")
    assert scan_path(folder).status == "unscanned"
    (folder / "vocab.txt").unlink()
    # Allow-list without .md: the README is now unscanned.
    strict = ScanOptions(inert_extensions=frozenset({".json", ".txt"}))
    assert scan_path(folder, strict).status == "unscanned"
    result = CliRunner().invoke(model_app, ["scan", str(_text(tmp_path)), "--inert-ext", ".pt"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("case", ["random", "text"])
def test_verify_load_refuses_what_it_cannot_recognise(tmp_path: Path, case: str) -> None:
    path = CASES[case](tmp_path)
    with pytest.raises(ModelVerificationFailed, match="format"), prepare_model_file(
        path, VerifyConfig()
    ):
        pass
