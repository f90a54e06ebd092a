"""HTML sections of the refusal-direction report: per-layer separation, the candidates, and the
held-out effect of ablating and adding the chosen direction."""

from __future__ import annotations

from html import escape
from typing import Any

from wardgate.redteam.report_html import bar_chart_svg
from wardgate.whitebox import report


def _rates(evals: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    rows = [("unchanged", {"harmful refused": evals["unchanged"]["harmful_refused"],
                           "harmless refused": evals["unchanged"]["over_refusal"]}),
            ("direction ablated (hooks)", {"harmful refused":
                                           evals["ablated"]["harmful_refused"]}),
            ("direction added", {"harmless refused": evals["added"]["over_refusal"]})]
    if "orthogonalised" in evals:
        rows.insert(2, ("weights orthogonalised (GGUF, llama.cpp)",
                        {"harmful refused": evals["orthogonalised"]["harmful_refused"]}))
    return rows


def sections(payload: dict[str, Any]) -> list[str]:
    evals = payload["evaluation"]
    selection = payload["selection"]
    best = selection["best"]
    sep = selection["separation"]
    met = "".join(f"<li class={'pass' if ok else 'fail'}>{escape(name)}: "
                  f"{'met' if ok else 'MISSED'}</li>" for name, ok in payload["met"].items())
    rates = _rates(evals)
    by_layer: dict[int, float] = {}
    for c in payload["candidates"]:
        by_layer[c["layer"]] = min(by_layer.get(c["layer"], 1e9), c["ablate_harmful_score"])
    return [
        f"<p class=muted>judge: {escape(evals['judge']['note'])}. Directions from train "
        "splits, chosen on val splits, measured on held-out test splits; 95% Wilson "
        "intervals.</p>",
        f"<h2>Targets</h2><ul>{met}</ul>",
        f"<p>Chosen direction: layer {best['layer']}, post-instruction position "
        f"{best['position']} (of the {len(payload['candidates'])} candidates in the first "
        f"{selection['max_layer']} layers), by the rule: "
        f"{escape(selection['rule'])}.</p>",
        "<h2>Held-out effect</h2>",
        bar_chart_svg(rates, ["harmful refused", "harmless refused"],
                      title="Refusal on held-out test instructions"),
        report.table(["model", "harmful refused", "harmless refused"],
                     [[name, report.rate_text(r["harmful refused"]) if "harmful refused" in r
                       else "", report.rate_text(r["harmless refused"])
                       if "harmless refused" in r else ""] for name, r in rates]),
        "<h2>Where refusal lives: separation per layer</h2>",
        report.line_chart_svg(
            [("Cohen's d (val, last position)", [(float(s["layer"]), s["cohen_d"]) for s in sep])],
            title="Harmful vs harmless along each layer's difference-in-means direction",
            x_label="layer", y_label="Cohen's d"),
        report.line_chart_svg(
            [("best ablated harmful refusal score", [(float(k), v)
                                                     for k, v in sorted(by_layer.items())]),
             ("baseline", [(float(k), selection["baseline"]["harmful_score"])
                           for k in sorted(by_layer)])],
            title="Refusal score on harmful val with each layer's direction ablated",
            x_label="layer", y_label="log-odds of refusal tokens"),
        report.table(["layer", "Cohen's d", "AUROC"],
                     [[s["layer"], round(s["cohen_d"], 3), round(s["auroc"], 3)] for s in sep]),
    ]
