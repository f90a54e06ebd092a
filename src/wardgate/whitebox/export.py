"""Write a Llama-family state dict as a GGUF file llama.cpp (and so the gateway) can serve.

The tokenizer, its merges, special tokens and the chat template are copied verbatim from a
template GGUF (the model the weights were fine-tuned from), so the exported model formats
prompts exactly as the original did; only the architecture numbers and the tensors are new.
Weights go out in F16 (norms in F32, as llama.cpp's converter writes them); quantise
afterwards with ``llama_model_quantize`` (:mod:`wardgate.whitebox.quant`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wardgate.whitebox import names

#: Keys the exporter writes itself; everything else is copied from the template.
_OWN_PREFIXES = ("GGUF.", "general.file_type", "general.name", "general.quantization_version",
                 "llama.", "general.architecture")  # fmt: skip
_FTYPE_F16 = 1


@dataclass(frozen=True, slots=True)
class LlamaShape:
    """The numbers llama.cpp needs, in Hugging Face ``LlamaConfig`` terms."""

    n_layer: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    vocab_size: int
    context_length: int = 8192
    rope_theta: float = 100000.0
    rms_eps: float = 1e-5

    @classmethod
    def from_hf(cls, config: Any) -> LlamaShape:
        def get(key: str) -> Any:
            if isinstance(config, Mapping):
                return config.get(key)
            return getattr(config, key, None)

        return cls(n_layer=int(get("num_hidden_layers")), n_embd=int(get("hidden_size")),
                   n_ff=int(get("intermediate_size")), n_head=int(get("num_attention_heads")),
                   n_head_kv=int(get("num_key_value_heads") or get("num_attention_heads")),
                   vocab_size=int(get("vocab_size")),
                   context_length=int(get("max_position_embeddings") or 8192),
                   rope_theta=float(get("rope_theta") or 10000.0),
                   rms_eps=float(get("rms_norm_eps") or 1e-5))  # fmt: skip


def _copy_metadata(writer: Any, template: Path) -> None:
    from gguf import GGUFReader, GGUFValueType

    reader = GGUFReader(str(template))
    for key, field in reader.fields.items():
        if key.startswith(_OWN_PREFIXES):
            continue
        vtype = GGUFValueType(int(field.types[0]))
        value = field.contents()
        sub_type = GGUFValueType(int(field.types[-1])) if vtype == GGUFValueType.ARRAY else None
        writer.add_key_value(key, value, vtype, sub_type=sub_type)


def write_gguf(tensors: Iterable[tuple[str, np.ndarray]], out: str | Path, shape: LlamaShape, *,
               template: str | Path | None, name: str,
               progress: Callable[[str], None] | None = None) -> Path:  # fmt: skip
    """Write Hugging Face-named float tensors to ``out`` as an F16 GGUF.

    ``tensors`` may be a generator: each is converted and handed to the writer in turn.
    A tied head (no ``lm_head.weight``) stays tied: llama.cpp reuses the embedding. Without a
    ``template`` the file has no tokenizer (enough for weight diffs, not for serving).
    """
    from gguf import GGUFWriter

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".part")
    writer = GGUFWriter(str(tmp), "llama")
    writer.add_name(name)
    writer.add_file_type(_FTYPE_F16)
    writer.add_block_count(shape.n_layer)
    writer.add_context_length(shape.context_length)
    writer.add_embedding_length(shape.n_embd)
    writer.add_feed_forward_length(shape.n_ff)
    writer.add_head_count(shape.n_head)
    writer.add_head_count_kv(shape.n_head_kv)
    writer.add_rope_freq_base(shape.rope_theta)
    writer.add_layer_norm_rms_eps(shape.rms_eps)
    writer.add_rope_dimension_count(shape.n_embd // shape.n_head)
    writer.add_vocab_size(shape.vocab_size)
    if template is not None:
        _copy_metadata(writer, Path(template))
    for hf_name, array in tensors:
        gguf_name = names.hf_to_gguf(hf_name)
        if gguf_name is None:
            continue  # rotary caches and the like: llama.cpp recomputes them
        data = np.asarray(array, dtype=np.float32)
        heads = names.qk_heads(gguf_name, shape.n_head, shape.n_head_kv)
        if heads:
            data = names.permute_qk(data, heads)
        data = data if data.ndim == 1 else data.astype(np.float16)
        writer.add_tensor(gguf_name, np.ascontiguousarray(data))
        if progress:
            progress(gguf_name)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.replace(out)
    return out
