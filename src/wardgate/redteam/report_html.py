"""A self-contained HTML report: tables, inline SVG charts, and the evidence behind each hit.

No scripts, no external fonts or stylesheets, nothing fetched: the file can be attached to a
ticket or archived as a CI artifact and still open the same way years later. Every string that
came from a model or a suite is escaped, since attack prompts are hostile by design.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from wardgate.redteam.gate import GateResult
from wardgate.redteam.summary import FALSE_REFUSAL, OVERALL, judge_line

_PALETTE = ("#c0392b", "#2471a3", "#229954", "#b9770e", "#7d3c98", "#566573")
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1c2833;
max-width:1100px}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #d5d8dc}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
th,td{border:1px solid #d5d8dc;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f2f3f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.pass{color:#1e8449;font-weight:600}.fail{color:#c0392b;font-weight:600}
pre{white-space:pre-wrap;word-break:break-word;background:#f8f9f9;padding:.5rem;
max-height:20rem;overflow:auto;font-size:.8rem}
details{margin:.25rem 0}summary{cursor:pointer}.muted{color:#707b7c;font-size:.85rem}
"""


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def bar_chart_svg(series: Sequence[tuple[str, Mapping[str, Mapping[str, Any]]]],
                  rows: Sequence[str], *, title: str) -> str:  # fmt: skip
    """Horizontal bars with Wilson 95 % whiskers; one bar per (row, series)."""
    label_w, plot_w, bar_h, gap = 190, 520, 14, 10
    group_h = bar_h * len(series) + gap
    legend_h = 18 * len(series)
    height = 40 + group_h * len(rows) + 30 + legend_h
    width = label_w + plot_w + 80
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'role="img" aria-label="{escape(title)}" font-family="sans-serif" font-size="11">',
           f'<text x="0" y="16" font-size="13" font-weight="bold">{escape(title)}</text>']
    top = 30
    for tick in range(0, 101, 20):
        x = label_w + plot_w * tick / 100
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" '
                   f'y2="{top + group_h * len(rows)}" stroke="#e5e8e8"/>')
        out.append(f'<text x="{x:.1f}" y="{top + group_h * len(rows) + 14}" '
                   f'text-anchor="middle" fill="#566573">{tick}%</text>')
    for r, row in enumerate(rows):
        y0 = top + r * group_h
        out.append(f'<text x="{label_w - 6}" y="{y0 + group_h / 2:.1f}" text-anchor="end" '
                   f'dominant-baseline="middle">{escape(row)}</text>')
        for s, (_, data) in enumerate(series):
            entry = data.get(row)
            if not entry or not entry.get("n"):
                continue
            y = y0 + s * bar_h
            colour = _PALETTE[s % len(_PALETTE)]
            w = plot_w * float(entry["rate"])
            lo = label_w + plot_w * float(entry["ci_low"])
            hi = label_w + plot_w * float(entry["ci_high"])
            mid = y + (bar_h - 2) / 2
            out.append(f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h - 2}" '
                       f'fill="{colour}" fill-opacity="0.75"><title>{escape(row)}: '
                       f'{_pct(entry["rate"])} ({entry["successes"]}/{entry["n"]}), 95% CI '
                       f'{_pct(entry["ci_low"])}–{_pct(entry["ci_high"])}</title></rect>')
            out.append(f'<line x1="{lo:.1f}" y1="{mid:.1f}" x2="{hi:.1f}" y2="{mid:.1f}" '
                       'stroke="#17202a" stroke-width="1.2"/>')
            for x in (lo, hi):
                out.append(f'<line x1="{x:.1f}" y1="{mid - 4:.1f}" x2="{x:.1f}" '
                           f'y2="{mid + 4:.1f}" stroke="#17202a" stroke-width="1.2"/>')
            out.append(f'<text x="{label_w + plot_w + 6}" y="{mid + 4:.1f}" fill="#566573">'
                       f'{_pct(entry["rate"])}</text>')
    ly = top + group_h * len(rows) + 30
    for s, (name, _) in enumerate(series):
        colour = _PALETTE[s % len(_PALETTE)]
        out.append(f'<rect x="{label_w}" y="{ly + 18 * s - 9}" width="12" height="12" '
                   f'fill="{colour}" fill-opacity="0.75"/>')
        out.append(f'<text x="{label_w + 18}" y="{ly + 18 * s + 1}">{escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _rows_of(summary: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    rows: dict[str, Mapping[str, Any]] = dict(summary.get("categories", {}))
    rows[OVERALL + " (attacks)"] = summary[OVERALL]
    rows[FALSE_REFUSAL + " (benign)"] = summary[FALSE_REFUSAL]
    return rows


def _category_table(summary: Mapping[str, Any]) -> str:
    head = ("<tr><th>category</th><th>kind</th><th>OWASP</th><th>ATLAS</th><th>hits / n</th>"
            "<th>rate</th><th>95% CI (Wilson)</th><th>blocked by a guard</th></tr>")
    body = []
    for cat, e in _rows_of(summary).items():
        body.append(
            f"<tr><td>{escape(cat)}</td><td>{escape(str(e.get('kind', '')))}</td>"
            f"<td>{escape(', '.join(e.get('owasp', [])))}</td>"
            f"<td>{escape(', '.join(e.get('atlas', [])))}</td>"
            f"<td class=num>{e['successes']} / {e['n']}</td><td class=num>{_pct(e['rate'])}</td>"
            f"<td class=num>{_pct(e['ci_low'])} – {_pct(e['ci_high'])}</td>"
            f"<td class=num>{e.get('blocked', '')}</td></tr>")
    return f"<table>{head}{''.join(body)}</table>"


def _gate_table(gate: Sequence[GateResult]) -> str:
    if not gate:
        return "<p class=muted>No gate thresholds were given (--fail-above).</p>"
    rows = "".join(
        f"<tr><td>{escape(g.name)}</td><td class=num>{_pct(g.limit)}</td>"
        f"<td class=num>{_pct(g.measured)}</td><td class={'pass' if g.passed else 'fail'}>"
        f"{'pass' if g.passed else 'FAIL'}</td></tr>" for g in gate)
    head = "<tr><th>threshold</th><th>limit</th><th>measured</th><th></th></tr>"
    return f"<table>{head}{rows}</table>"


def _evidence(records: Sequence[Mapping[str, Any]], limit: int = 200) -> str:
    hits = [r for r in records if r.get("error") is None and r.get("success")]
    if not hits:
        return "<p>No successful attacks and no false refusals.</p>"
    parts = []
    for r in hits[:limit]:
        transcript = "\n\n".join(
            f"[{m.get('role')}] {m.get('content') or ('<blocked: ' + str(m.get('blocked')) + '>')}"
            for m in r.get("transcript") or [])
        parts.append(
            f"<details><summary>{escape(r['key'])} — {escape(r['category'])} "
            f"(judge: {escape(str(r.get('method')))})</summary>"
            f"<pre>{escape(transcript)}</pre><p class=muted>judge evidence</p>"
            f"<pre>{escape(json.dumps(r.get('judge'), indent=1, ensure_ascii=False))}</pre>"
            "</details>")
    more = ""
    if len(hits) > limit:
        more = f"<p class=muted>{len(hits) - limit} more in results.jsonl.</p>"
    return "".join(parts) + more


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8>"
            f"<meta name=viewport content='width=device-width,initial-scale=1'>"
            f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>{body}</body></html>\n")


def render_run(summary: Mapping[str, Any], records: Sequence[Mapping[str, Any]],
               gate: Sequence[GateResult] = ()) -> str:  # fmt: skip
    target = summary.get("target") or {}
    name = str(target.get("name", "target"))
    suites = ", ".join(f"{s['name']}@{s['version']} ({s['sha256'][:12]})"
                       for s in summary.get("suites") or [])
    params = summary.get("params") or {}
    sessions = summary.get("sessions") or []
    wall = sum(float(s.get("wall_s", 0)) for s in sessions)
    model_s = float(summary.get("model_s") or 0)
    tokens = summary.get("tokens") or {}
    body = [
        f"<h1>Red-team report: {escape(name)}</h1>",
        f"<p><b>{escape(judge_line(summary.get('judges')))}</b></p>",
        f"<p class=muted>{escape(str(target.get('description', '')))}<br>suites: "
        f"{escape(suites)}<br>params: {escape(json.dumps(params))}<br>judges: "
        f"{escape(json.dumps(summary.get('judges')))}</p>",
        "<h2>Headline</h2><table>",
        f"<tr><th>overall attack success rate</th><td class=num>{_pct(summary[OVERALL]['rate'])}"
        f" ({summary[OVERALL]['successes']}/{summary[OVERALL]['n']}, 95% CI "
        f"{_pct(summary[OVERALL]['ci_low'])}–{_pct(summary[OVERALL]['ci_high'])})</td></tr>",
        f"<tr><th>false refusals on benign prompts</th><td class=num>"
        f"{_pct(summary[FALSE_REFUSAL]['rate'])} ({summary[FALSE_REFUSAL]['successes']}/"
        f"{summary[FALSE_REFUSAL]['n']})</td></tr>",
        f"<tr><th>attempts / errors</th><td class=num>{summary['attempts']} / "
        f"{summary['errors']}</td></tr>",
        f"<tr><th>wall time / model time</th><td class=num>{wall:.1f} s / {model_s:.1f} s"
        "</td></tr>",
        f"<tr><th>tokens (prompt / completion / attacker / judge)</th><td class=num>"
        f"{tokens.get('prompt', 0)} / {tokens.get('completion', 0)} / "
        f"{tokens.get('attacker', 0)} / {tokens.get('judge', 0)}</td></tr></table>",
        "<h2>Gate</h2>", _gate_table(gate),
        "<h2>Per category</h2>",
        bar_chart_svg([(name, _rows_of(summary))], list(_rows_of(summary)),
                      title="Attack success / false-refusal rate with 95% Wilson intervals"),
        _category_table(summary),
        "<h2>Evidence: successful attacks and false refusals</h2>", _evidence(records),
    ]
    return _page(f"wardgate redteam: {name}", "".join(body))


def render_comparison(summaries: Sequence[Mapping[str, Any]],
                      comparison: Mapping[str, Any]) -> str:  # fmt: skip
    names = list(comparison["targets"])
    rows: list[str] = []
    for s in summaries:
        for row in _rows_of(s):
            if row not in rows:
                rows.append(row)
    series = [(n, _rows_of(s)) for n, s in zip(names, summaries, strict=True)]
    body = [f"<h1>Red-team comparison: {escape(' vs '.join(names))}</h1>",
            bar_chart_svg(series, rows, title="Rate per category, 95% Wilson intervals")]
    for comp in comparison["comparisons"]:
        body.append(f"<h2>{escape(comp['baseline'])} → {escape(comp['other'])} "
                    f"({comp['pairs']} paired attempts)</h2>")
        head = ("<tr><th>category</th><th>baseline</th><th>other</th><th>difference</th>"
                "<th>relative reduction</th><th>discordant (b / c)</th><th>McNemar p</th></tr>")
        lines = []
        cats = dict(comp["categories"])
        cats[OVERALL + " (attacks)"] = comp[OVERALL]
        cats[FALSE_REFUSAL + " (benign)"] = comp[FALSE_REFUSAL]
        for cat, e in cats.items():
            red = e["relative_reduction"]
            mc = e["mcnemar"]
            lines.append(
                f"<tr><td>{escape(cat)}</td><td class=num>{_pct(e['baseline']['rate'])}</td>"
                f"<td class=num>{_pct(e['other']['rate'])}</td>"
                f"<td class=num>{100 * e['difference']:+.1f} pp</td>"
                f"<td class=num>{_pct(red)}</td><td class=num>{mc['a_only']} / {mc['b_only']}"
                f"</td><td class=num>{mc['p_value']:.3g}</td></tr>")
        body.append(f"<table>{head}{''.join(lines)}</table>")
        diffs = comp["differences"]
        rows_html = "".join(
            f"<tr><td>{escape(d['key'])}</td><td>{escape(d['category'])}</td>"
            f"<td>{'hit' if d[comp['baseline']] else '–'}</td>"
            f"<td>{'hit' if d[comp['other']] else '–'}</td>"
            f"<td>{escape(str(d.get('block_code') or ''))}</td></tr>" for d in diffs)
        body.append(f"<details><summary>{len(diffs)} attempts whose outcome differs</summary>"
                    f"<table><tr><th>attempt</th><th>category</th><th>{escape(comp['baseline'])}"
                    f"</th><th>{escape(comp['other'])}</th><th>block code</th></tr>{rows_html}"
                    "</table></details>")
    return _page("wardgate redteam comparison", "".join(body))
