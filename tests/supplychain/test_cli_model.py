"""``wardgate model`` sub-commands: output formats, exit codes, no partial files."""

from __future__ import annotations

import json
import os

import supplychain_corpus as sc
from typer.testing import CliRunner

from wardgate.cli.model import model_app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(model_app, list(args))


def test_scan_exit_codes_and_json(tmp_path):
    clean = tmp_path / "clean.pkl"
    clean.write_bytes(sc.Asm(4).empty_dict().stop())
    evil = tmp_path / "evil.bin"
    evil.write_bytes(sc._evil())
    result = run("scan", str(clean))
    assert result.exit_code == 0, result.output
    assert "clean" in result.output
    result = run("scan", str(evil), "--json")
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert data["clean"] is False and data["findings"][0]["code"] == "pickle.unsafe_global"
    assert "os.system" in data["globals"]
    result = run("scan", str(tmp_path / "missing.pt"))
    assert result.exit_code == 2 and "no such file" in result.output


def test_scan_corrupt_file_is_exit_2(tmp_path):
    cut = tmp_path / "cut.pt"
    cut.write_bytes(sc.torch_zip({"w": (4,)})[:200])
    result = run("scan", str(cut), "--json")
    assert result.exit_code == 2
    assert json.loads(result.output)["errors"]


def test_scan_allow_option(tmp_path):
    path = tmp_path / "custom.pkl"
    path.write_bytes(sc.call_pickle("mylib.layers", "Block", 1))
    assert run("scan", str(path)).exit_code == 1
    assert run("scan", str(path), "--allow", "mylib.layers.Block").exit_code == 0
    allow = tmp_path / "allow.txt"
    allow.write_text("# ours\nmylib.layers.Block\n")
    assert run("scan", str(path), "--allow-file", str(allow)).exit_code == 0


def test_hash_sign_verify_round_trip(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "w.bin").write_bytes(os.urandom(10_000))
    result = run("hash", str(model), "--json")
    assert result.exit_code == 0
    root = json.loads(result.output)["sha256"]
    assert run("keygen", str(tmp_path / "k.pem"), str(tmp_path / "k.pub")).exit_code == 0
    assert run("keygen", str(tmp_path / "k.pem"), str(tmp_path / "k2.pub")).exit_code == 2
    sig = tmp_path / "model.sig"
    result = run("sign", str(model), "--key", str(tmp_path / "k.pem"), "-o", str(sig))
    assert result.exit_code == 0, result.output
    result = run(
        "verify",
        str(model),
        "-s",
        str(sig),
        "--public-key",
        str(tmp_path / "k.pub"),
        "--sha256",
        root,
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["ok"] is True
    (model / "w.bin").write_bytes(b"tampered")
    result = run("verify", str(model), "-s", str(sig), "--public-key", str(tmp_path / "k.pub"))
    assert result.exit_code == 1 and "FAILED" in result.output
    result = run("sign", str(model), "-o", str(tmp_path / "x.sig"))
    assert result.exit_code == 2 and not (tmp_path / "x.sig").exists()


def test_encrypt_decrypt_and_tamper(tmp_path):
    src = tmp_path / "w.gguf"
    src.write_bytes(os.urandom(50_000))
    key = tmp_path / "model.key"
    assert run("gen-key", str(key)).exit_code == 0
    assert key.stat().st_mode & 0o777 == 0o600
    enc = tmp_path / "w.gguf.enc"
    assert run("encrypt", str(src), str(enc), "--key-file", str(key)).exit_code == 0
    out = tmp_path / "out.gguf"
    assert run("decrypt", str(enc), str(out), "--key-file", str(key)).exit_code == 0
    assert out.read_bytes() == src.read_bytes()
    enc.write_bytes(enc.read_bytes()[:-5])
    bad = tmp_path / "bad.gguf"
    result = run("decrypt", str(enc), str(bad), "--key-file", str(key))
    assert result.exit_code == 1 and not bad.exists()
    result = run("encrypt", str(src), str(tmp_path / "y"), "--key-env", "WG_TEST_NO_SUCH_ENV")
    assert result.exit_code == 2


def test_audit_template_on_text_file(tmp_path):
    good = tmp_path / "good.jinja"
    good.write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    assert run("audit-template", str(good)).exit_code == 0
    bad = tmp_path / "bad.jinja"
    bad.write_text("{{ lipsum.__globals__['os'].popen('id').read() }}")
    result = run("audit-template", str(bad), "--json")
    assert result.exit_code == 1
    assert json.loads(result.output)["clean"] is False


def test_bom_writes_file_atomically(tmp_path):
    cfg = tmp_path / "wardgate.yaml"
    cfg.write_text("models:\n  - name: smollm2-135m\n")
    out = tmp_path / "bom.json"
    result = run("bom", "--config", str(cfg), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["specVersion"] == "1.6"
    result = run("bom", "--config", str(tmp_path / "missing.yaml"), "-o", str(tmp_path / "b2.json"))
    assert result.exit_code == 2 and not (tmp_path / "b2.json").exists()
