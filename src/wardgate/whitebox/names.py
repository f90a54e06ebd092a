"""Tensor names and layouts of the Llama family, in Hugging Face and in GGUF form.

The two formats store the same weights under different names, and llama.cpp's converter
permutes the rows of the query and key projections (GGUF keeps rotary pairs interleaved,
Hugging Face keeps them in halves). Comparing or converting across formats needs both facts;
they are here once, in numpy, so that the diff needs no torch.
"""

from __future__ import annotations

import re

import numpy as np

_HF_LAYER = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
_HF_GLOBAL = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
_GGUF_LAYER = {v: k for k, v in _HF_LAYER.items()}
_GGUF_GLOBAL = {v: k for k, v in _HF_GLOBAL.items()}
_HF_LAYER_RE = re.compile(r"^model\.layers\.(\d+)\.(.+)$")
_GGUF_LAYER_RE = re.compile(r"^blk\.(\d+)\.(.+)$")


def hf_to_gguf(name: str) -> str | None:
    """The GGUF name of a Hugging Face Llama tensor, or ``None`` if it has none."""
    if name in _HF_GLOBAL:
        return _HF_GLOBAL[name]
    match = _HF_LAYER_RE.match(name)
    if match and match.group(2) in _HF_LAYER:
        return f"blk.{match.group(1)}.{_HF_LAYER[match.group(2)]}"
    return None


def gguf_to_hf(name: str) -> str | None:
    if name in _GGUF_GLOBAL:
        return _GGUF_GLOBAL[name]
    match = _GGUF_LAYER_RE.match(name)
    if match and match.group(2) in _GGUF_LAYER:
        return f"model.layers.{match.group(1)}.{_GGUF_LAYER[match.group(2)]}"
    return None


def layer_of(gguf_name: str) -> str:
    """The group a tensor belongs to in reports: ``blk.3``, ``embedding``, ``head``."""
    match = _GGUF_LAYER_RE.match(gguf_name)
    if match:
        return f"blk.{match.group(1)}"
    if gguf_name.startswith("token_embd"):
        return "embedding"
    return "head"


def layer_index(gguf_name: str) -> int | None:
    match = _GGUF_LAYER_RE.match(gguf_name)
    return int(match.group(1)) if match else None


def permute_qk(weights: np.ndarray, n_head: int) -> np.ndarray:
    """Hugging Face → GGUF row order of a query/key projection (llama.cpp's ``permute``)."""
    rows = weights.shape[0]
    return (
        weights.reshape(n_head, 2, rows // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def unpermute_qk(weights: np.ndarray, n_head: int) -> np.ndarray:
    """GGUF → Hugging Face row order (the inverse of :func:`permute_qk`)."""
    rows = weights.shape[0]
    return (
        weights.reshape(n_head, rows // n_head // 2, 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def qk_heads(gguf_name: str, n_head: int, n_head_kv: int) -> int | None:
    """How many heads to (un)permute a tensor by, or ``None`` if it is not permuted."""
    if gguf_name.endswith("attn_q.weight"):
        return n_head
    if gguf_name.endswith("attn_k.weight"):
        return n_head_kv
    return None
