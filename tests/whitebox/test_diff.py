"""``wardgate whitebox diff``: verdicts on tiny random Llama checkpoints in GGUF and safetensors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tests.whitebox.tiny import TINY, save_safetensors, tiny_state
from typer.testing import CliRunner

from wardgate.cli.main import app
from wardgate.whitebox import names
from wardgate.whitebox.checkpoint import CheckpointError, open_checkpoint
from wardgate.whitebox.diff import compare
from wardgate.whitebox.export import write_gguf


def _gguf(state: dict[str, np.ndarray], path: Path, name: str = "tiny") -> Path:
    return write_gguf(state.items(), path, TINY, template=None, name=name)


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return _gguf(tiny_state(0), tmp_path / "base.gguf")


def test_qk_permutation_round_trips() -> None:
    w = np.arange(8 * 3 * 5, dtype=np.float32).reshape(24, 5)
    for heads in (1, 2, 3):
        assert np.array_equal(names.unpermute_qk(names.permute_qk(w, heads), heads), w)
    assert not np.array_equal(names.permute_qk(w, 3), w)


def test_a_copy_is_identical(base: Path, tmp_path: Path) -> None:
    copy = _gguf(tiny_state(0), tmp_path / "copy.gguf")
    result = compare(open_checkpoint(base), open_checkpoint(copy))
    assert result.verdict == "identical"
    assert result.changed_layers == []


def test_an_edited_layer_is_found(base: Path, tmp_path: Path) -> None:
    state = tiny_state(0)
    key = "model.layers.1.self_attn.v_proj.weight"
    state[key] = state[key] + 0.01 * np.random.default_rng(1).normal(size=state[key].shape)
    edited = _gguf(state, tmp_path / "edited.gguf")
    result = compare(open_checkpoint(base), open_checkpoint(edited))
    assert result.verdict == "modified"
    assert result.changed_layers == ["blk.1"]
    changed = [t for t in result.tensors if t.changed]
    assert [t.name for t in changed] == ["blk.1.attn_v.weight"]
    assert 0.05 < changed[0].rel_change < 0.5  # 0.01 noise on 0.05-scale weights ≈ 0.2


def test_gguf_and_safetensors_of_the_same_weights_match(base: Path, tmp_path: Path) -> None:
    # The GGUF stores q/k rows permuted; comparing across formats must undo that exactly.
    folder = save_safetensors(tiny_state(0), tmp_path / "hf")
    result = compare(open_checkpoint(base), open_checkpoint(folder))
    qk = [t for t in result.tensors if t.kind in ("attn_q.weight", "attn_k.weight")]
    assert len(qk) == 2 * TINY.n_layer
    # F16 storage in the GGUF against F32: tiny, uniform rounding error, no layer stands out
    assert all(t.rel_change is not None and t.rel_change < 1e-3 for t in result.tensors)
    assert result.verdict == "re-encoded", result.reason


def test_unrelated_weights_and_other_shapes_are_different(base: Path, tmp_path: Path) -> None:
    other = _gguf(tiny_state(7), tmp_path / "other.gguf")
    result = compare(open_checkpoint(base), open_checkpoint(other))
    assert result.verdict == "different"
    assert "unrelated" in result.reason
    state = tiny_state(0)
    del state["model.layers.2.mlp.up_proj.weight"]
    pruned = _gguf(state, tmp_path / "pruned.gguf")
    result = compare(open_checkpoint(base), open_checkpoint(pruned))
    assert result.verdict == "different"
    assert result.only_in_a == ["blk.2.ffn_up.weight"]


def test_not_a_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "x.bin"
    bogus.write_bytes(b"PK\x03\x04nope")
    with pytest.raises(CheckpointError, match="neither GGUF nor safetensors"):
        open_checkpoint(bogus)


def test_cli_writes_reports_and_expect_same_fails_on_a_modified_copy(
    base: Path, tmp_path: Path
) -> None:
    state = tiny_state(0)
    state["model.layers.0.mlp.down_proj.weight"] *= 1.5
    # the tampered file keeps the base model's claimed name
    edited = _gguf(state, tmp_path / "edited.gguf", name="tiny")
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["whitebox", "diff", str(base), str(edited), "-o", str(out),
                                      "--expect-same"])
    assert result.exit_code == 1, result.output
    assert "verdict: modified" in result.output
    assert "claims to be 'tiny' but is not" in result.output
    payload = json.loads((out / "diff.json").read_text())
    assert payload["changed_layers"] == ["blk.0"]
    assert payload["run"]["models"]["b"]["sha256"]
    assert "numpy" in payload["run"]["versions"]
    html = (out / "diff.html").read_text()
    assert "<svg" in html and "verdict: modified" in html
    same = CliRunner().invoke(app, ["whitebox", "diff", str(base), str(base), "-o", str(out),
                                    "--expect-same"])
    assert same.exit_code == 0, same.output
