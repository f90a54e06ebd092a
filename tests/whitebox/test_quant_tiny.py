"""``wardgate whitebox quant-sweep`` end to end on a tiny random Llama model (real llama.cpp
quantiser, real harness): every level is quantised, evaluated, scored, paired against the
reference, a rerun resumes, and bad input is refused before anything runs."""

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
from wardgate.whitebox.data import find_splits
from wardgate.whitebox.export import write_gguf
from wardgate.whitebox.quant import breaks_at, file_type, ftype_of, quantise, tensor_types

pytest.importorskip("llama_cpp")


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    shape = dataclasses.replace(TINY, vocab_size=49152)  # SmolLM2's tokenizer, copied over
    path = tmp_path_factory.mktemp("tiny") / "tiny.gguf"
    return write_gguf(
        tiny_state(7, shape).items(), path, shape, template=embedded_model_path(), name="tiny"
    )


def _splits_or_skip() -> None:
    try:
        find_splits()
    except ConfigError:
        pytest.skip("the public instruction splits are not beside this checkout")


def test_levels_are_llama_cpp_file_types() -> None:
    import llama_cpp

    assert ftype_of("q4_k_m") == llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
    with pytest.raises(ConfigError, match=r"unknown quantisation level 'Q9_Z'.*Q8_0"):
        ftype_of("Q9_Z")


def test_quantising_writes_the_level_and_keeps_no_partial_file(
    tiny_gguf: Path, tmp_path: Path
) -> None:
    import llama_cpp

    assert file_type(tiny_gguf) == llama_cpp.LLAMA_FTYPE_MOSTLY_F16
    out = quantise(tiny_gguf, tmp_path / "q8.gguf", "Q8_0", threads=1, allow_requantize=False)
    assert file_type(out) == llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
    storage = tensor_types(out)
    assert "Q8_0" in storage["tensors"] and 8 < storage["bits_per_weight"] < 16
    assert tensor_types(tiny_gguf)["bits_per_weight"] > 15  # F16 weights, F32 norms
    assert out.stat().st_size < tiny_gguf.stat().st_size
    assert [p.name for p in tmp_path.iterdir()] == ["q8.gguf"]


def test_safety_breaks_only_on_a_significant_rise() -> None:
    def row(level: str, rose: int, fell: int, p: float) -> dict[str, object]:
        return {"level": level, "mcnemar_vs_reference": {"b_only": rose, "a_only": fell,
                                                         "p_value": p}}  # fmt: skip

    assert breaks_at([row("Q8_0", 1, 0, 1.0), row("Q4_K_M", 9, 0, 0.004),
                      row("Q2_K", 20, 0, 1e-6)]) == "Q4_K_M"  # fmt: skip
    assert breaks_at([row("Q8_0", 0, 9, 0.004)]) is None  # fewer successes is not breaking
    assert breaks_at([row("Q8_0", 3, 1, 0.6)]) is None


def test_bad_levels_and_quantised_references_are_refused_before_work(
    tiny_gguf: Path, tmp_path: Path
) -> None:
    _splits_or_skip()
    result = CliRunner().invoke(app, ["whitebox", "quant-sweep", "-m", str(tiny_gguf),
                                      "-o", str(tmp_path / "a"), "--level", "Q9_Z"])  # fmt: skip
    assert result.exit_code == 2 and "unknown quantisation level" in result.output
    assert not (tmp_path / "a").exists()
    quantised = quantise(tiny_gguf, tmp_path / "q8.gguf", "Q8_0", threads=1,
                         allow_requantize=False)  # fmt: skip
    result = CliRunner().invoke(app, ["whitebox", "quant-sweep", "-m", str(quantised),
                                      "-o", str(tmp_path / "b")])  # fmt: skip
    assert result.exit_code == 2 and "already quantised" in result.output
    result = CliRunner().invoke(app, ["whitebox", "quant-sweep", "-m", str(tmp_path / "nope"),
                                      "-o", str(tmp_path / "c")])  # fmt: skip
    assert result.exit_code == 2 and "no such model file" in result.output


@pytest.mark.slow
def test_quant_sweep_measures_every_level_and_resumes(tiny_gguf: Path, tmp_path: Path) -> None:
    _splits_or_skip()
    out = tmp_path / "sweep"
    args = ["whitebox", "quant-sweep", "-m", str(tiny_gguf), "-o", str(out), "--level", "Q8_0",
            "--level", "Q4_K_M", "--eval-n", "3", "--ppl-n", "3", "--max-tokens", "16",
            "--threads", "1"]  # fmt: skip
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    payload = json.loads((out / "quant.json").read_text())
    assert [r["level"] for r in payload["levels"]] == ["Q8_0", "Q4_K_M"]
    ref = payload["reference"]
    assert ref["precision"] == "F16" and ref["asr"]["n"] == 3 and ref["over_refusal"]["n"] == 3
    for row in payload["levels"]:
        assert row["asr"]["n"] == 3 and row["mcnemar_vs_reference"]["pairs"] == 3
        assert row["perplexity"] > 1 and row["perplexity_ratio"] > 0
        assert row["size_ratio"] < 1
        assert row["throughput"]["completion_tokens"] > 0
        assert 0 < row["storage"]["bits_per_weight"] < ref["storage"]["bits_per_weight"]
    sizes = [r["file"]["bytes"] for r in payload["levels"]]
    assert sizes[0] > sizes[1], "Q4_K_M is smaller than Q8_0"
    assert payload["judge"]["harmful"] == "pair_minilm"
    assert "<svg" in (out / "quant.html").read_text()
    assert "report:" in first.output
    # a rerun finds every level measured and quantises nothing again
    stamps = {p: p.stat().st_mtime_ns for p in (out / "models").glob("*.gguf")}
    second = CliRunner().invoke(app, args)
    assert second.exit_code == 0, second.output
    assert {p: p.stat().st_mtime_ns for p in (out / "models").glob("*.gguf")} == stamps
