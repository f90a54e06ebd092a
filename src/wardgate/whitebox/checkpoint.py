"""Read a checkpoint one tensor at a time: GGUF (any llama.cpp quantisation) or safetensors.

Both readers map the file and hand out one dequantised float32 tensor per call, so comparing
two models costs memory for two tensors, not two models. Names are reported in GGUF form
(``blk.3.attn_q.weight``) whatever the format, so a GGUF and a safetensors copy of the same
weights can be compared tensor by tensor.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wardgate.errors import WardgateError
from wardgate.whitebox import names


class CheckpointError(WardgateError):
    code = "whitebox_checkpoint"


@dataclass(slots=True)
class TensorInfo:
    name: str  # GGUF form
    shape: tuple[int, ...]  # numpy order (rows first)
    dtype: str  # storage type: F16, Q4_1, BF16, ...


@dataclass
class Checkpoint:
    """An opened checkpoint. ``layout`` is the row order of query/key projections it stores."""

    path: Path
    format: str  # "gguf" | "safetensors"
    meta: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, TensorInfo] = field(default_factory=dict)
    _gguf: Any = None
    _st_files: dict[str, Path] = field(default_factory=dict)
    _st_names: dict[str, str] = field(default_factory=dict)
    _index: dict[str, Any] | None = None

    @property
    def layout(self) -> str:
        return "gguf" if self.format == "gguf" else "hf"

    @property
    def claimed_name(self) -> str | None:
        return self.meta.get("name")

    def read(self, name: str, layout: str | None = None) -> np.ndarray:
        """One tensor as float32, in ``layout`` row order (default: as stored)."""
        array = self._read_native(name)
        wanted = layout or self.layout
        if wanted != self.layout:
            heads = names.qk_heads(name, int(self.meta.get("n_head") or 0),
                                   int(self.meta.get("n_head_kv") or 0))  # fmt: skip
            if heads:
                convert = names.permute_qk if wanted == "gguf" else names.unpermute_qk
                array = convert(array, heads)
        return array

    def _read_native(self, name: str) -> np.ndarray:
        if name not in self.tensors:
            raise CheckpointError(f"{self.path}: no tensor {name!r}")
        if self.format == "gguf":
            from gguf import GGMLQuantizationType, dequantize

            tensor = self._gguf_index[name]
            qtype = GGMLQuantizationType(int(tensor.tensor_type))
            data = dequantize(np.asarray(tensor.data), qtype)
            return np.asarray(data, dtype=np.float32).reshape(self.tensors[name].shape)
        from safetensors import safe_open

        source = self._st_names[name]
        with safe_open(str(self._st_files[name]), framework="numpy") as handle:
            return np.asarray(_st_get(handle, source), dtype=np.float32)

    @property
    def _gguf_index(self) -> dict[str, Any]:
        if self._index is None:
            self._index = {t.name: t for t in self._gguf.tensors}
        return self._index

    def raw(self, name: str) -> bytes | None:
        """The stored bytes of a tensor (to skip dequantising two equal tensors)."""
        if self.format == "gguf":
            return bytes(np.asarray(self._gguf_index[name].data).tobytes())
        return None

    def __iter__(self) -> Iterator[str]:
        return iter(self.tensors)


def _st_get(handle: Any, name: str) -> np.ndarray:
    try:
        return handle.get_tensor(name)
    except TypeError:  # bfloat16 has no numpy dtype: widen through the raw bits
        raise CheckpointError(
            f"tensor {name!r} is bfloat16; save the checkpoint in float16 or float32"
        ) from None


def _field(reader: Any, key: str) -> Any:
    entry = reader.fields.get(key)
    if entry is None:
        return None
    try:
        return entry.contents()
    except Exception:  # older gguf-py: read the last part by hand
        part = entry.parts[-1]
        return bytes(part).decode() if part.dtype == np.uint8 else part.tolist()[0]


def open_gguf(path: Path) -> Checkpoint:
    from gguf import GGMLQuantizationType, GGUFReader

    try:
        reader = GGUFReader(str(path))
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable GGUF file ({exc})") from exc
    arch = _field(reader, "general.architecture") or "llama"
    meta = {
        "architecture": arch,
        "name": _field(reader, "general.name"),
        "n_layer": _field(reader, f"{arch}.block_count"),
        "n_head": _field(reader, f"{arch}.attention.head_count"),
        "n_head_kv": _field(reader, f"{arch}.attention.head_count_kv"),
        "n_embd": _field(reader, f"{arch}.embedding_length"),
    }
    ckpt = Checkpoint(path=path, format="gguf", meta=meta, _gguf=reader)
    for tensor in reader.tensors:
        shape = tuple(int(d) for d in reversed(tensor.shape.tolist()))
        qtype = GGMLQuantizationType(int(tensor.tensor_type)).name
        ckpt.tensors[tensor.name] = TensorInfo(tensor.name, shape, qtype)
    return ckpt


def open_safetensors(path: Path) -> Checkpoint:
    from safetensors import safe_open

    files = sorted(path.glob("*.safetensors")) if path.is_dir() else [path]
    if not files:
        raise CheckpointError(f"{path}: no .safetensors files")
    folder = path if path.is_dir() else path.parent
    meta: dict[str, Any] = {"architecture": "llama"}
    config_file = folder / "config.json"
    if config_file.is_file():
        config = json.loads(config_file.read_text())
        meta.update(
            name=config.get("_name_or_path") or None,
            n_layer=config.get("num_hidden_layers"),
            n_head=config.get("num_attention_heads"),
            n_head_kv=config.get("num_key_value_heads", config.get("num_attention_heads")),
            n_embd=config.get("hidden_size"),
            tie_word_embeddings=config.get("tie_word_embeddings"),
        )
    ckpt = Checkpoint(path=path, format="safetensors", meta=meta)
    for file in files:
        try:
            handle_cm = safe_open(str(file), framework="numpy")
        except Exception as exc:
            raise CheckpointError(f"{file}: not a readable safetensors file ({exc})") from exc
        with handle_cm as handle:
            for source in handle.keys():  # noqa: SIM118 - safe_open has no __iter__
                name = names.hf_to_gguf(source) or source
                info = handle.get_slice(source)
                ckpt.tensors[name] = TensorInfo(name, tuple(info.get_shape()), info.get_dtype())
                ckpt._st_files[name] = file
                ckpt._st_names[name] = source
    if meta.get("tie_word_embeddings") and "output.weight" in ckpt.tensors:
        # transformers saves a tied head only as the embedding; drop a duplicate if present
        pass
    return ckpt


def open_checkpoint(path: str | Path) -> Checkpoint:
    """Open a GGUF file, a ``.safetensors`` file or a folder of them."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder")
    if path.is_file():
        with path.open("rb") as handle:
            head = handle.read(4)
        if head == b"GGUF":
            return open_gguf(path)
        if path.suffix == ".safetensors":
            return open_safetensors(path)
        raise CheckpointError(f"{path}: neither GGUF nor safetensors")
    return open_safetensors(path)
