"""A tiny random Llama-architecture state dict in numpy (Hugging Face names), for fast tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from wardgate.whitebox.export import LlamaShape

TINY = LlamaShape(n_layer=3, n_embd=32, n_ff=64, n_head=4, n_head_kv=2, vocab_size=96,
                  context_length=128)


def tiny_state(seed: int = 0, shape: LlamaShape = TINY) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    head_dim = shape.n_embd // shape.n_head
    state = {"model.embed_tokens.weight": rng.normal(size=(shape.vocab_size, shape.n_embd))}
    for i in range(shape.n_layer):
        p = f"model.layers.{i}."
        state[p + "input_layernorm.weight"] = 1 + 0.1 * rng.normal(size=shape.n_embd)
        state[p + "self_attn.q_proj.weight"] = rng.normal(size=(shape.n_embd, shape.n_embd))
        state[p + "self_attn.k_proj.weight"] = rng.normal(
            size=(shape.n_head_kv * head_dim, shape.n_embd))
        state[p + "self_attn.v_proj.weight"] = rng.normal(
            size=(shape.n_head_kv * head_dim, shape.n_embd))
        state[p + "self_attn.o_proj.weight"] = rng.normal(size=(shape.n_embd, shape.n_embd))
        state[p + "post_attention_layernorm.weight"] = 1 + 0.1 * rng.normal(size=shape.n_embd)
        state[p + "mlp.gate_proj.weight"] = rng.normal(size=(shape.n_ff, shape.n_embd))
        state[p + "mlp.up_proj.weight"] = rng.normal(size=(shape.n_ff, shape.n_embd))
        state[p + "mlp.down_proj.weight"] = rng.normal(size=(shape.n_embd, shape.n_ff))
    state["model.norm.weight"] = np.ones(shape.n_embd)
    return {k: (0.05 * v if v.ndim == 2 else v).astype(np.float32) for k, v in state.items()}


def save_safetensors(state: dict[str, np.ndarray], folder: Path,
                     shape: LlamaShape = TINY) -> Path:
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file(state, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "num_hidden_layers": shape.n_layer, "hidden_size": shape.n_embd,
        "intermediate_size": shape.n_ff, "num_attention_heads": shape.n_head,
        "num_key_value_heads": shape.n_head_kv, "vocab_size": shape.vocab_size,
        "max_position_embeddings": shape.context_length, "tie_word_embeddings": True,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0}))
    return folder
