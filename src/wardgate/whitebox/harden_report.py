"""HTML sections of the harden report: base vs hardened on held-out data, and the loss curve."""

from __future__ import annotations

from html import escape
from typing import Any

from wardgate.redteam.report_html import bar_chart_svg
from wardgate.whitebox import report

_ROWS = {"harmful refused": "harmful_refused", "attack success (harmful)": "asr",
         "over-refusal (benign)": "over_refusal"}  # fmt: skip


def sections(payload: dict[str, Any]) -> list[str]:
    evals = payload["evaluation"]
    trained = payload["training"]
    labels = [m for m in ("base", "hardened") if m in evals]
    series = [(m, {row: evals[m][key] for row, key in _ROWS.items()}) for m in labels]
    rows = [[m] + [report.rate_text(evals[m][key]) for key in _ROWS.values()] for m in labels]
    met = "".join(f"<li class={'pass' if ok else 'fail'}>{escape(name)}: "
                  f"{'met' if ok else 'MISSED'}</li>" for name, ok in payload["met"].items())
    ppl = trained["ppl"]
    losses = trained["losses"]
    split = evals.get("split", "test")
    out = [
        f"<p class=muted>judge: {escape(evals['judge']['note'])}. Held-out {split} splits only; "
        f"trained on train splits. n per rate in brackets, 95% Wilson intervals.</p>",
        f"<h2>Targets</h2><ul>{met}</ul>",
        "<h2>Held-out behaviour</h2>",
        bar_chart_svg(series, list(_ROWS),
                      title=f"Base vs hardened, held-out {split} instructions"),
        report.table(["model", *_ROWS], rows),
    ]
    if "mcnemar_harmful" in evals:
        mc = evals["mcnemar_harmful"]
        out.append(f"<p>McNemar (attack success, paired by item): base-only {mc['a_only']}, "
                   f"hardened-only {mc['b_only']}, p = {mc['p_value']:.3g} "
                   f"over {mc['pairs']} pairs.</p>")
    out += [
        "<h2>Perplexity on harmless answers</h2>",
        report.table(["base", "hardened", "ratio", "answers"],
                     [[ppl["base"], ppl["hardened"], ppl["ratio"], ppl["pairs"]]]),
        "<p class=muted>The answers are the base model's own greedy answers to held-out harmless "
        "test instructions, so the base perplexity is a floor: any drift raises the ratio.</p>",
        "<h2>Training</h2>",
        report.line_chart_svg([("loss", [(float(i + 1), v) for i, v in enumerate(losses)])],
                              title="Training loss per LoRA step", x_label="step",
                              y_label="loss"),
        report.table(["examples", "steps", "trainable parameters", "seconds"],
                     [[trained["examples"], trained["steps"], trained["trainable_params"],
                       trained["train_s"]]]),
        "<h2>Signed artefact</h2>",
        report.table(["file", "sha256", "signature", "serving config"],
                     [[payload["signed"]["gguf"]["path"], payload["signed"]["gguf"]["sha256"],
                       payload["signed"]["signature"], payload["signed"]["config"]]]),
        "<h2>Data</h2>", report.table(list(payload["data"]), [list(payload["data"].values())]),
    ]
    return out
