"""HTML sections of the attack-finetune report: attack success against examples fine-tuned on."""

from __future__ import annotations

from html import escape
from typing import Any

from wardgate.whitebox import report


def _band(curve: list[dict[str, Any]]) -> list[tuple[float, float, float]]:
    return [(float(p["n"]), p["asr"]["ci_low"] or 0.0, p["asr"]["ci_high"] or 0.0) for p in curve]


def sections(payload: dict[str, Any]) -> list[str]:
    curves: dict[str, list[dict[str, Any]]] = payload["curves"]
    broken = payload["broken_asr"]
    series = [(f"{kind} pairs", [(float(p["n"]), p["asr"]["rate"] or 0.0) for p in curve])
              for kind, curve in curves.items()]  # fmt: skip
    rows = []
    for kind, curve in curves.items():
        for point in curve:
            mc = point.get("mcnemar_vs_given")
            rows.append(
                [
                    kind if point["n"] else "model as given",
                    point["n"],
                    report.rate_text(point["asr"]),
                    report.rate_text(point["harmful_refused"]),
                    report.rate_text(point["over_refusal"]),
                    f"{mc['b_only']} / {mc['a_only']}, p = {mc['p_value']:.3g}" if mc else "–",
                ]
            )
    breaks = "".join(
        f"<li><b>{escape(kind)}</b>: "
        + (
            f"{n} examples"
            if n is not None
            else f"not reached at N ≤ {max(p['n'] for p in curves[kind])}"
        )
        + "</li>"
        for kind, n in payload["examples_to_break"].items()
    )
    return [
        f"<p class=muted>judge: {escape(payload['judge']['note'])}. Attack data from train "
        "splits; attack success measured on held-out test instructions; 95% Wilson intervals; "
        "McNemar paired by item against the model as given.</p>",
        f"<h2>Examples to break (smallest N with attack success ≥ {broken:.0%})</h2>"
        f"<ul>{breaks}</ul>",
        "<h2>Attack success against fine-tuning examples</h2>",
        report.line_chart_svg(
            series,
            title="Held-out attack success after fine-tuning on N pairs",
            x_label="N examples fine-tuned on",
            y_label="attack success",
            y_range=(0.0, 1.0),
            bands={name: _band(curves[name.split()[0]]) for name, _ in series},
        ),
        report.table(
            [
                "fine-tuned on",
                "N",
                "attack success",
                "harmful refused",
                "over-refusal (benign)",
                "McNemar newly / no longer succeeding",
            ],
            rows,
        ),
        "<h2>Training</h2>",
        report.table(
            ["run", "examples", "steps", "final loss", "seconds"],
            [
                [name, t["examples"], t["steps"], t["final_loss"], t["train_s"]]
                for name, t in payload["training"].items()
            ],
        ),
    ]
