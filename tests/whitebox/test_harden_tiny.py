"""``wardgate whitebox harden`` end to end on a tiny random Llama model (real torch, real
llama.cpp, real signing): every stage runs, resumes, and produces a servable signed GGUF."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.whitebox.tiny import TINY, tiny_state
from wardgate.cli.main import app
from wardgate.embedded import embedded_model_path
from wardgate.errors import ConfigError
from wardgate.whitebox.checkpoint import open_checkpoint
from wardgate.whitebox.data import find_splits
from wardgate.whitebox.diff import compare
from wardgate.whitebox.export import write_gguf

pytest.importorskip("peft")


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    shape = dataclasses.replace(TINY, vocab_size=49152)  # SmolLM2's tokenizer, copied over
    path = tmp_path_factory.mktemp("tiny") / "tiny.gguf"
    return write_gguf(tiny_state(3, shape).items(), path, shape,
                      template=embedded_model_path(), name="tiny")


def test_harden_runs_every_stage_and_resumes(tiny_gguf: Path, tmp_path: Path) -> None:
    try:
        find_splits()
    except ConfigError:
        pytest.skip("the public instruction splits are not beside this checkout")
    out = tmp_path / "harden"
    args = ["whitebox", "harden", "-m", str(tiny_gguf), "-o", str(out), "--harmful-train", "6",
            "--harmless-train", "6", "--eval-n", "3", "--ppl-n", "3", "--epochs", "1",
            "--batch-size", "4", "--threads", "1"]
    first = CliRunner().invoke(app, args)
    # a random model cannot meet the targets: the command says so with exit 1
    assert first.exit_code in (0, 1), first.output
    payload = json.loads((out / "harden.json").read_text())
    assert payload["data"]["harmful_refusal"] == 6
    assert payload["training"]["steps"] >= 2
    assert payload["evaluation"]["hardened"]["asr"]["n"] == 3
    assert payload["evaluation"]["base"]["over_refusal"]["n"] == 3
    assert "mcnemar_harmful" in payload["evaluation"]
    assert set(payload["run"]["data"]) >= {"harmful_train", "harmful_test"}
    assert (out / "hardened.gguf.sig").is_file()
    config = (out / "wardgate.yaml").read_text()
    assert "require_signature: true" in config
    html = (out / "harden.html").read_text()
    assert "<svg" in html and "compliance" in html
    # the merged LoRA changed the attention and MLP weights, not the embedding or norms
    diff = compare(open_checkpoint(tiny_gguf), open_checkpoint(out / "hardened.gguf"))
    assert diff.verdict == "modified"
    changed = {t.kind for t in diff.tensors if t.changed}
    assert "attn_q.weight" in changed and "ffn_down.weight" in changed
    assert "token_embd.weight" not in changed and "attn_norm.weight" not in changed
    # second run: every stage is already done, nothing is regenerated
    stamp = (out / "hardened.gguf").stat().st_mtime_ns
    second = CliRunner().invoke(app, args)
    assert second.exit_code == first.exit_code, second.output
    assert (out / "hardened.gguf").stat().st_mtime_ns == stamp


def test_the_signed_config_loads_and_verifies(tiny_gguf: Path, tmp_path: Path) -> None:
    from wardgate.config import load_config
    from wardgate.supplychain.signing import verify_model

    pytest.importorskip("model_signing")
    from wardgate.whitebox.harden import HardenPlan, sign_and_config

    out = tmp_path / "h"
    out.mkdir()
    (out / "hardened.gguf").write_bytes(tiny_gguf.read_bytes())
    plan = HardenPlan(model=tiny_gguf, out=out, splits=None)  # type: ignore[arg-type]
    signed = sign_and_config(plan)
    config = load_config(Path(signed["config"]))
    model = config.models[0]
    assert model.verify.require_signature
    verify_model(Path(model.path), Path(model.verify.signature),
                 public_key=Path(model.verify.public_key))
