"""Slow: the diff on the real embedded SmolLM2, against an independent reader (transformers)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from wardgate.embedded import embedded_model_path
from wardgate.whitebox.checkpoint import open_checkpoint
from wardgate.whitebox.diff import compare
from wardgate.whitebox.export import LlamaShape, write_gguf

pytestmark = pytest.mark.slow


def test_transformers_copy_is_identical_and_an_edited_layer_stands_out(tmp_path: Path) -> None:
    if importlib.util.find_spec("transformers") is None:
        pytest.skip("the whitebox extra is not installed")
    import torch
    from transformers import AutoModelForCausalLM

    gguf = embedded_model_path()
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                 dtype=torch.float32)
    model.save_pretrained(tmp_path / "hf", safe_serialization=True)
    # transformers de-quantises and un-permutes q/k itself: every value must come back equal
    same = compare(open_checkpoint(gguf), open_checkpoint(tmp_path / "hf"))
    assert same.verdict == "identical", same.reason

    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    state["model.layers.5.mlp.up_proj.weight"] = state["model.layers.5.mlp.up_proj.weight"] * 1.1
    edited = write_gguf(state.items(), tmp_path / "edited.gguf", LlamaShape.from_hf(model.config),
                        template=gguf, name="SmolLM2 135M")
    # Q4_1 against F16: every tensor differs by quantisation noise; only blk.5 stands out
    result = compare(open_checkpoint(gguf), open_checkpoint(edited))
    assert result.verdict == "modified", result.reason
    assert result.changed_layers == ["blk.5"], result.reason
    assert np.isclose(next(t.rel_change for t in result.tensors
                       if t.name == "blk.5.ffn_up.weight"), 0.1, atol=0.03)
