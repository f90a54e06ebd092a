"""The diff's JSON and HTML: a heat map of relative change per layer and tensor kind."""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from pathlib import Path
from typing import Any

from wardgate.whitebox import report
from wardgate.whitebox.checkpoint import Checkpoint
from wardgate.whitebox.diff import KINDS, DiffResult, _layer_key


def write_diff_report(out: str | Path, result: DiffResult, a: Checkpoint, b: Checkpoint,
                      params: Mapping[str, Any]) -> tuple[Path, Path]:  # fmt: skip
    run = report.run_record(
        "whitebox diff", params=params,
        models={"a": {**report.file_digest(a.path), "format": a.format, "claims": a.claimed_name},
                "b": {**report.file_digest(b.path), "format": b.format, "claims": b.claimed_name}},
    )  # fmt: skip
    payload = {"run": run, **result.as_dict()}
    layers = sorted({t.layer for t in result.tensors if t.layer.startswith("blk.")},
                    key=_layer_key)  # fmt: skip
    by_key = {(t.layer, t.kind): t.rel_change for t in result.tensors}
    grid = [[by_key.get((layer, kind)) for layer in layers] for kind in KINDS]
    sections = [
        f"<p><b>verdict: {result.verdict}</b> — {escape(result.reason)}</p>",
        report.table(["", "A", "B"], [
            ["file", str(a.path), str(b.path)], ["format", a.format, b.format],
            ["claims to be", a.claimed_name or "–", b.claimed_name or "–"],
            ["sha256", run["models"]["a"]["sha256"], run["models"]["b"]["sha256"]]]),
        "<h2>Relative change per layer and tensor</h2>",
        report.heatmap_svg([k.replace(".weight", "") for k in KINDS],
                           [layer.split(".")[1] for layer in layers], grid,
                           title="‖B−A‖/‖A‖ per block (columns) and tensor (rows), log scale"),
        "<h2>Outside the blocks</h2>",
        report.table(["tensor", "relative change", "max |Δ|", "changed"],
                     [[t.name, t.rel_change if t.rel_change is not None else "–",
                       t.max_abs if t.max_abs is not None else "–", "yes" if t.changed else "no"]
                      for t in result.tensors if not t.layer.startswith("blk.")]),
        "<h2>Per layer</h2>",
        report.table(["layer", "tensors", "changed", "max relative change"],
                     [[k, v["tensors"], v["changed"], v["max_rel"]]
                      for k, v in sorted(result.layers().items(),
                                         key=lambda kv: _layer_key(kv[0]))]),
    ]
    if result.only_in_a or result.only_in_b:
        sections.append(report.table(["only in A", "only in B"],
                                     [[", ".join(result.only_in_a) or "–",
                                       ", ".join(result.only_in_b) or "–"]]))
    return report.write_report(out, "diff", payload, "wardgate whitebox diff", sections)
