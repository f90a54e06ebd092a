"""``wardgate whitebox diff A B``: which tensors, and which layers, differ between two models.

Streams: one tensor of each checkpoint is in memory at a time (GGUF files are memory-mapped
and dequantised tensor by tensor). For each tensor present in both it reports the relative
change ``‖B − A‖ / ‖A‖`` (Frobenius norms, float64 accumulation) and the largest absolute
change, then groups by layer.

The verdict answers "is B the model A?":

* ``identical`` — same tensors, same shapes, every value equal;
* ``re-encoded`` — same tensors and shapes, stored in a different precision, and every change is
  within what re-quantisation explains (no tensor kind stands out above its own noise floor);
* ``modified`` — some tensors changed beyond that: the layers are listed (what a fine-tune or a
  weight edit touched);
* ``different`` — tensors missing or of another shape, or most weights unrelated: not the same
  model at all.

Across precisions "changed" means: above ``tolerance`` and above ``noise_factor`` times the
median relative change of the same tensor kind (``attn_q``, ``ffn_down``…) in that comparison —
quantisation error is roughly uniform across layers of one kind; an edit is not. The floor is
a heuristic: an edit spread evenly over every layer of a kind, at the size of quantisation
noise, is reported as ``re-encoded``. Same-precision comparisons have no floor.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from wardgate.whitebox import names
from wardgate.whitebox.checkpoint import Checkpoint

#: Relative change above which two tensors are "unrelated" (independent weights give ≈ √2).
UNRELATED = 0.5


@dataclass(slots=True)
class TensorDiff:
    name: str
    layer: str
    kind: str
    shape: list[int]
    dtype_a: str
    dtype_b: str
    rel_change: float | None = None
    max_abs: float | None = None
    norm_a: float | None = None
    changed: bool = False
    problem: str | None = None


@dataclass
class DiffResult:
    verdict: str
    reason: str
    tensors: list[TensorDiff] = field(default_factory=list)
    changed_layers: list[str] = field(default_factory=list)
    only_in_a: list[str] = field(default_factory=list)
    only_in_b: list[str] = field(default_factory=list)
    claimed_a: str | None = None
    claimed_b: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["layers"] = self.layers()
        return out

    def layers(self) -> dict[str, dict[str, Any]]:
        grouped: dict[str, dict[str, Any]] = {}
        for t in self.tensors:
            entry = grouped.setdefault(t.layer, {"tensors": 0, "changed": 0, "max_rel": 0.0})
            entry["tensors"] += 1
            entry["changed"] += int(t.changed)
            if t.rel_change is not None:
                entry["max_rel"] = max(entry["max_rel"], t.rel_change)
        return grouped


def _kind(name: str) -> str:
    return name.split(".", 2)[-1] if name.startswith("blk.") else name


def compare(a: Checkpoint, b: Checkpoint, *, tolerance: float = 1e-6, noise_factor: float = 3.0,
            progress: Callable[[str], None] | None = None) -> DiffResult:  # fmt: skip
    """Compare two checkpoints tensor by tensor (see the module docstring for the verdict)."""
    layout = "gguf" if "gguf" in (a.format, b.format) else "hf"
    common = [n for n in a.tensors if n in b.tensors]
    only_a = [n for n in a.tensors if n not in b.tensors]
    only_b = [n for n in b.tensors if n not in a.tensors]
    # A tied head is stored once by one writer and twice by another: not a difference.
    for extra, other in ((only_a, b), (only_b, a)):
        if "output.weight" in extra and "output.weight" not in other.tensors:
            extra.remove("output.weight")
    diffs: list[TensorDiff] = []
    for name in common:
        ta, tb = a.tensors[name], b.tensors[name]
        d = TensorDiff(name=name, layer=names.layer_of(name), kind=_kind(name),
                       shape=list(ta.shape), dtype_a=ta.dtype, dtype_b=tb.dtype)  # fmt: skip
        if progress:
            progress(name)
        if tuple(ta.shape) != tuple(tb.shape):
            d.problem = f"shape {list(ta.shape)} vs {list(tb.shape)}"
            diffs.append(d)
            continue
        if ta.dtype == tb.dtype and a.format == b.format == "gguf" and a.raw(name) == b.raw(name):
            d.rel_change, d.max_abs = 0.0, 0.0
            diffs.append(d)
            continue
        xa = a.read(name, layout).astype(np.float64, copy=False)
        xb = b.read(name, layout).astype(np.float64, copy=False)
        delta = xb - xa
        norm_a = float(np.linalg.norm(xa))
        norm_d = float(np.linalg.norm(delta))
        d.norm_a = norm_a
        d.rel_change = norm_d / norm_a if norm_a > 0 else (0.0 if norm_d == 0 else math.inf)
        d.max_abs = float(np.max(np.abs(delta))) if delta.size else 0.0
        diffs.append(d)
        del xa, xb, delta
    _mark_changed(diffs, tolerance, noise_factor)
    result = DiffResult(verdict="", reason="", tensors=diffs, only_in_a=only_a, only_in_b=only_b,
                        claimed_a=a.claimed_name, claimed_b=b.claimed_name)  # fmt: skip
    _verdict(result)
    return result


def _mark_changed(diffs: list[TensorDiff], tolerance: float, noise_factor: float) -> None:
    """Flag changed tensors. Across precisions the floor is ``noise_factor`` × the median change
    of the same tensor kind (or, for a kind with fewer than 3 tensors such as the embedding, of
    all tensors stored in the same pair of precisions, or failing that of all re-encoded
    tensors)."""
    by_kind: dict[str, list[float]] = {}
    by_pair: dict[tuple[str, str], list[float]] = {}
    for d in diffs:
        if d.rel_change is not None and d.dtype_a != d.dtype_b:
            by_kind.setdefault(d.kind, []).append(d.rel_change)
            by_pair.setdefault((d.dtype_a, d.dtype_b), []).append(d.rel_change)
    for d in diffs:
        if d.problem:
            d.changed = True
            continue
        assert d.rel_change is not None
        floor = 0.0
        if d.dtype_a != d.dtype_b:
            pool = by_kind.get(d.kind, [])
            if len(pool) < 3:
                pool = by_pair.get((d.dtype_a, d.dtype_b), [])
            if len(pool) < 3:
                pool = [v for values in by_pair.values() for v in values]
            floor = statistics.median(pool) * noise_factor if len(pool) >= 3 else 0.0
        d.changed = d.rel_change > max(tolerance, floor)


def _verdict(result: DiffResult) -> None:
    diffs = result.tensors
    problems = [d for d in diffs if d.problem]
    if not diffs or result.only_in_a or result.only_in_b or problems:
        missing = len(result.only_in_a) + len(result.only_in_b)
        result.verdict = "different"
        result.reason = (f"{missing} tensors present in only one file, {len(problems)} of "
                         "different shape: not the same architecture")
        result.changed_layers = sorted({d.layer for d in problems}, key=_layer_key)
        return
    rels = [d.rel_change for d in diffs if d.rel_change is not None]
    median_rel = statistics.median(rels)
    changed = [d for d in diffs if d.changed]
    result.changed_layers = sorted({d.layer for d in changed}, key=_layer_key)
    if median_rel > UNRELATED:
        result.verdict = "different"
        result.reason = (f"median relative change {median_rel:.3g} over {len(diffs)} tensors: "
                         "the weights are unrelated")
    elif all(d.rel_change == 0 for d in diffs):
        result.verdict = "identical"
        result.reason = f"all {len(diffs)} tensors equal"
    elif not changed:
        result.verdict = "re-encoded"
        result.reason = (f"all {len(diffs)} tensors within precision noise (median relative "
                         f"change {median_rel:.3g}); no layer stands out")
    else:
        result.verdict = "modified"
        result.reason = (f"{len(changed)} of {len(diffs)} tensors changed, in "
                         f"{len(result.changed_layers)} layer groups: "
                         f"{', '.join(result.changed_layers[:12])}"
                         f"{' …' if len(result.changed_layers) > 12 else ''}")


def _layer_key(layer: str) -> tuple[int, int]:
    if layer == "embedding":
        return (0, 0)
    if layer.startswith("blk."):
        return (1, int(layer.split(".")[1]))
    return (2, 0)


KINDS = ("attn_norm.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight",
         "attn_output.weight", "ffn_norm.weight", "ffn_gate.weight", "ffn_up.weight",
         "ffn_down.weight")  # fmt: skip
