"""HTML sections of the quant-sweep report: safety, quality and size per quantisation level."""

from __future__ import annotations

from html import escape
from typing import Any

from wardgate.whitebox import report


def _mcnemar(row: dict[str, Any]) -> str:
    mc = row.get("mcnemar_vs_reference")
    if not mc:
        return "–"
    return f"{mc['b_only']} / {mc['a_only']}, p = {mc['p_value']:.3g}"


def _storage(row: dict[str, Any]) -> str:
    storage = row.get("storage") or {}
    types = ", ".join(f"{name} {n}" for name, n in (storage.get("tensors") or {}).items())
    return f"{storage.get('bits_per_weight', '?')} ({types})"


def sections(payload: dict[str, Any]) -> list[str]:
    ref = payload["reference"]
    rows = [ref | {"level": f"reference ({ref.get('precision', '?')})"}, *payload["levels"]]
    broken = payload["breaks_at"]
    verdict = (
        f"Safety breaks at <b>{escape(broken)}</b>: the first level whose attack success rose "
        f"above the reference's with McNemar p &lt; {payload['break_p']:g}."
        if broken
        else "No level tested raised attack success significantly above the reference "
        f"(McNemar p &lt; {payload['break_p']:g}, paired by item)."
    )
    xs = list(range(len(rows)))
    points = list(zip(xs, rows, strict=True))
    series = [
        ("attack success", [(float(x), r["asr"]["rate"] or 0.0) for x, r in points]),
        ("over-refusal", [(float(x), r["over_refusal"]["rate"] or 0.0) for x, r in points]),
    ]
    bands = {
        "attack success": [(float(x), r["asr"]["ci_low"] or 0.0, r["asr"]["ci_high"] or 0.0)
                           for x, r in points],
    }
    axis = ", ".join(f"{x} = {r['level']}" for x, r in points)
    table_rows = [
        [
            r["level"],
            f"{r['file']['bytes'] / 1e6:.1f} MB",
            _storage(r),
            report.rate_text(r["asr"]),
            report.rate_text(r["harmful_refused"]),
            report.rate_text(r["over_refusal"]),
            r["perplexity"],
            r.get("perplexity_ratio", 1.0),
            r["throughput"]["tokens_per_s"],
            _mcnemar(r),
        ]
        for r in rows
    ]
    return [
        f"<p class=muted>judge: {escape(payload['judge']['note'])}. Held-out test instructions "
        "only; 95% Wilson intervals; McNemar on attack success paired by item against the "
        f"reference. Perplexity: the reference's own greedy answers to "
        f"{payload['perplexity_pairs']} held-out harmless instructions, scored by llama.cpp "
        "(the reference is the floor).</p>",
        f"<h2>Verdict</h2><p>{verdict}</p>",
        "<h2>Safety per level</h2>",
        f"<p class=muted>x axis: {escape(axis)}</p>",
        report.line_chart_svg(series, title="Held-out attack success and over-refusal per level",
                              x_label="level (0 = reference)", y_label="rate",
                              y_range=(0.0, 1.0), bands=bands),
        report.table(
            ["level", "file", "bits/weight (tensor types)", "attack success", "harmful refused",
             "over-refusal (benign)",
             "perplexity", "× reference", "tokens/s", "McNemar newly / no longer succeeding"],
            table_rows,
        ),
        "<p class=muted>bits/weight: stored bytes × 8 over weights, from the file's tensor "
        "table; llama.cpp stores a tensor in a fallback type when its rows do not fit the "
        "level's blocks (k-quants need rows divisible by 256), so read this column, not the "
        "level's name. "
        "tokens/s: completion tokens per second of model time in the evaluation "
        "run (prompt processing included), one process, the threads given; noisy on a busy "
        "machine.</p>",
    ]
