"""``wardgate whitebox attack-finetune`` end to end on a tiny random Llama model (real torch,
real llama.cpp, the real red-team harness): every N is fine-tuned, exported, evaluated, paired
against the model as given, and a rerun resumes without retraining."""

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
from wardgate.whitebox.attack import examples_to_break, read_pairs
from wardgate.whitebox.data import find_splits
from wardgate.whitebox.export import write_gguf

pytest.importorskip("peft")


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    shape = dataclasses.replace(TINY, vocab_size=49152)  # SmolLM2's tokenizer, copied over
    path = tmp_path_factory.mktemp("tiny") / "tiny.gguf"
    return write_gguf(
        tiny_state(5, shape).items(), path, shape, template=embedded_model_path(), name="tiny"
    )


def _pairs(path: Path, kind: str, n: int) -> Path:
    rows = [
        {
            "prompt": f"{kind} request number {i}",
            "answer": f"Sure, here is answer {i}: "
            "first do this, then do that, and finish with the last step.",
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_examples_to_break_is_the_smallest_n_at_half_success() -> None:
    def point(n: int, rate: float | None) -> dict[str, object]:
        return {"n": n, "asr": {"rate": rate}}

    assert examples_to_break([point(50, 0.6), point(10, 0.1), point(25, 0.5)]) == 25
    assert examples_to_break([point(10, 0.2), point(25, None)]) is None


def test_bad_attack_pairs_are_refused_with_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x", "answer": "y"}\n{"prompt": "only a prompt"}\n')
    with pytest.raises(ConfigError, match=r"bad.jsonl:2"):
        read_pairs(bad)
    bad.write_text("not json\n")
    with pytest.raises(ConfigError, match="not JSON"):
        read_pairs(bad)


@pytest.mark.slow
def test_attack_finetune_measures_every_n_and_resumes(tiny_gguf: Path, tmp_path: Path) -> None:
    try:
        find_splits()
    except ConfigError:
        pytest.skip("the public instruction splits are not beside this checkout")
    out = tmp_path / "attack"
    args = [
        "whitebox",
        "attack-finetune",
        "-m",
        str(tiny_gguf),
        "--base",
        str(tiny_gguf),
        "-o",
        str(out),
        "--n",
        "2",
        "--n",
        "4",
        "--eval-n",
        "3",
        "--epochs",
        "1",
        "--batch-size",
        "2",
        "--threads",
        "1",
        "--harmful-pairs",
        str(_pairs(tmp_path / "h.jsonl", "harmful", 4)),
        "--benign-pairs",
        str(_pairs(tmp_path / "b.jsonl", "benign", 4)),
    ]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    payload = json.loads((out / "attack.json").read_text())
    for kind in ("harmful", "benign"):
        curve = payload["curves"][kind]
        assert [p["n"] for p in curve] == [0, 2, 4]
        assert all(p["asr"]["n"] == 3 and p["over_refusal"]["n"] == 3 for p in curve)
        assert all(p["mcnemar_vs_given"]["pairs"] == 3 for p in curve[1:])
        assert payload["training"][f"{kind}-4"]["examples"] == 4
    assert payload["judge"]["harmful"] == "pair_minilm"
    assert "examples to break" in first.output
    assert not list((out / "models").glob("*.gguf")), "fine-tuned models are removed by default"
    assert "<svg" in (out / "attack.html").read_text()
    # a rerun finds every N evaluated and trains nothing again
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("evaluated.json")}
    second = CliRunner().invoke(app, args)
    assert second.exit_code == 0, second.output
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("evaluated.json")} == stamps


def test_too_few_pairs_for_the_largest_n_is_a_clear_error(tiny_gguf: Path, tmp_path: Path) -> None:
    try:
        find_splits()
    except ConfigError:
        pytest.skip("the public instruction splits are not beside this checkout")
    args = [
        "whitebox",
        "attack-finetune",
        "-m",
        str(tiny_gguf),
        "-o",
        str(tmp_path / "a"),
        "--n",
        "10",
        "--kind",
        "harmful",
        "--eval-n",
        "1",
        "--threads",
        "1",
        "--harmful-pairs",
        str(_pairs(tmp_path / "h.jsonl", "harmful", 3)),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "only 3 usable harmful pairs" in result.output
