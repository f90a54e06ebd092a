"""``wardgate whitebox harden`` end to end on a tiny random Llama model (real torch, real
llama.cpp, real signing): every stage runs, resumes, and produces a servable signed GGUF."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from tests.whitebox.tiny import TINY, tiny_state
from typer.testing import CliRunner

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


@pytest.mark.slow
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
    assert "<svg" in html and "pair_minilm" in html
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
    # a val evaluation reuses the trained model and keeps its runs and report apart from test's
    test_run = {f.name: f.read_bytes() for f in (out / "runs" / "hardened").iterdir()
                if f.is_file()}
    third = CliRunner().invoke(app, [*args, "--eval-split", "val"])
    assert third.exit_code in (0, 1), third.output
    assert "evaluated on the val split" in third.output
    assert (out / "hardened.gguf").stat().st_mtime_ns == stamp
    val = json.loads((out / "harden-val.json").read_text())
    assert val["evaluation"]["split"] == "val" and val["run"]["params"]["eval_split"] == "val"
    assert "harmful_val" in val["run"]["data"]
    assert val["evaluation"]["hardened"]["asr"]["n"] == 3
    def prompts(suite: Path) -> set[str]:
        return {json.loads(line)["messages"][0]["content"]
                for line in suite.read_text().splitlines() if line}

    val_prompts, test_prompts = prompts(out / "heldout-val.jsonl"), prompts(out / "heldout.jsonl")
    assert val_prompts and not val_prompts & test_prompts
    assert (out / "runs" / "val" / "hardened").is_dir()
    assert {f.name: f.read_bytes() for f in (out / "runs" / "hardened").iterdir()
            if f.is_file()} == test_run
    assert json.loads((out / "harden.json").read_text())["evaluation"].get("split") == "test"


def test_harden_refuses_an_unknown_eval_split_before_any_work(tmp_path: Path) -> None:
    out = tmp_path / "harden"
    result = CliRunner().invoke(app, ["whitebox", "harden", "-m", "embedded", "-o", str(out),
                                      "--eval-split", "train"])
    assert result.exit_code != 0
    assert "eval split must be one of test, val" in result.output
    assert not out.exists()


def test_the_signed_model_is_served_by_its_config_and_a_tampered_one_is_not(
    tiny_gguf: Path, tmp_path: Path
) -> None:
    """What harden writes is what the gateway serves: real HTTP through the openai SDK, and the
    signature enforced at load (fail closed) when the file changes after signing."""
    import yaml
    from openai import OpenAI
    from tests.conftest import serve_in_thread

    from wardgate.config import GatewayConfig
    from wardgate.gateway.app import create_app
    from wardgate.gateway.service import Gateway
    from wardgate.whitebox.harden import HardenPlan, sign_and_config

    pytest.importorskip("model_signing")
    out = tmp_path / "h"
    out.mkdir()
    (out / "hardened.gguf").write_bytes(tiny_gguf.read_bytes())
    plan = HardenPlan(model=tiny_gguf, out=out, splits=None)  # type: ignore[arg-type]
    signed = sign_and_config(plan)
    served = yaml.safe_load(Path(signed["config"]).read_text())
    assert served["models"][0]["verify"]["require_signature"] is True

    def gateway_config() -> GatewayConfig:
        return GatewayConfig.model_validate({
            "database_url": f"sqlite:///{tmp_path / 'gw.db'}",
            "auth": {"secret_file": str(tmp_path / "secret"), "secret_env": "WB_NO_SECRET"},
            **served})

    config = gateway_config()
    gateway = Gateway(config)
    key = gateway.keys.create(owner="whitebox")[1]
    with serve_in_thread(create_app(config, gateway=gateway)) as url:
        client = OpenAI(base_url=f"{url}/v1", api_key=key)
        reply = client.chat.completions.create(
            model="hardened", messages=[{"role": "user", "content": "Hello"}], max_tokens=4)
        assert reply.choices[0].message.content is not None
        assert reply.usage is not None and reply.usage.completion_tokens >= 1

    data = bytearray((out / "hardened.gguf").read_bytes())
    data[-1] ^= 0x01  # one bit of the last tensor
    (out / "hardened.gguf").write_bytes(bytes(data))
    # fail closed: the backend refuses to load weights that no longer match their signature
    import asyncio

    from wardgate.backends.base import create_backend
    from wardgate.errors import WardgateError

    backend = create_backend(gateway_config().models[0])
    with pytest.raises(WardgateError) as failure:
        asyncio.run(backend.start())
    assert failure.value.code == "model_verification_failed", failure.value.message
