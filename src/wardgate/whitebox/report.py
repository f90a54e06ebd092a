"""What every white-box command writes: ``<name>.json`` and a self-contained ``<name>.html``.

Every run records what it ran on (file digests of models and data, library versions, seed,
parameters), so a figure in the docs can be traced to the exact inputs that produced it.
The HTML has no scripts and nothing external, like the red-team reports; charts are inline SVG.
"""

from __future__ import annotations

import json
import math
import platform
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from html import escape
from importlib import metadata
from pathlib import Path
from typing import Any

from wardgate.redteam.report_html import _CSS, _PALETTE

_LIBRARIES = ("wardgate", "numpy", "gguf", "safetensors", "torch", "transformers", "peft",
              "llama_cpp_python")  # fmt: skip


def library_versions() -> dict[str, str]:
    """Installed versions, read from package metadata (importing torch just to ask is slow)."""
    found: dict[str, str] = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            found[name] = metadata.version(name.replace("_", "-"))
        except metadata.PackageNotFoundError:
            continue
    return found


def file_digest(path: str | Path) -> dict[str, Any]:
    from wardgate.supplychain.hashing import sha256_file

    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        parts = {str(p.relative_to(path)): sha256_file(p)[0] for p in files}
        import hashlib

        joined = "\n".join(f"{k} {v}" for k, v in parts.items()).encode()
        return {"path": str(path), "sha256": hashlib.sha256(joined).hexdigest(),
                "files": len(parts)}  # fmt: skip
    digest, size = sha256_file(path)
    return {"path": str(path), "sha256": digest, "bytes": size}


def run_record(command: str, *, params: Mapping[str, Any], models: Mapping[str, Any] = {},
               data: Mapping[str, Any] = {}) -> dict[str, Any]:  # fmt: skip
    return {
        "command": command,
        "argv": sys.argv,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "params": dict(params),
        "models": dict(models),
        "data": dict(data),
        "versions": library_versions(),
        "host": {"machine": platform.machine(), "system": platform.system()},
    }


def write_report(out_dir: str | Path, name: str, payload: Mapping[str, Any], title: str,
                 sections: Sequence[str]) -> tuple[Path, Path]:  # fmt: skip
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / f"{name}.json"
    html_path = out / f"{name}.html"
    json_path.write_text(json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n")
    run = payload.get("run", {})
    footer = (f"<h2>Run</h2><pre>{escape(json.dumps(run, indent=1, default=str))}</pre>")
    html_path.write_text(page(title, "".join(sections) + footer))
    return json_path, html_path


def page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8>"
            f"<meta name=viewport content='width=device-width,initial-scale=1'>"
            f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{escape(title)}</h1>{body}</body></html>\n")


def table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    th = "".join(f"<th>{escape(str(h))}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"<td class=num>{value:.4g}</td>"
    if isinstance(value, int):
        return f"<td class=num>{value}</td>"
    return f"<td>{escape(str(value))}</td>"


def pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def rate_text(rate: Mapping[str, Any]) -> str:
    return (f"{pct(rate['rate'])} ({rate['successes']}/{rate['n']}; 95% CI "
            f"{pct(rate['ci_low'])}–{pct(rate['ci_high'])})")


def heatmap_svg(rows: Sequence[str], cols: Sequence[str], values: Sequence[Sequence[float | None]],
                *, title: str, log: bool = True) -> str:  # fmt: skip
    """Rows × columns of coloured cells (log10 scale by default); ``None`` cells are grey."""
    cell, label_w, top = 22, 110, 34
    width = label_w + cell * len(cols) + 120
    height = top + cell * len(rows) + 40
    finite = [v for row in values for v in row if (v is not None and v > 0) or (not log and v)]
    scale = [math.log10(v) if log else v for v in finite if v is not None and (v > 0 or not log)]
    lo, hi = (min(scale), max(scale)) if scale else (0.0, 1.0)
    if hi - lo < 1e-12:
        hi = lo + 1.0
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'role="img" aria-label="{escape(title)}" font-family="sans-serif" font-size="10">',
           f'<text x="0" y="14" font-size="13" font-weight="bold">{escape(title)}</text>']
    for c, col in enumerate(cols):
        out.append(f'<text x="{label_w + c * cell + cell / 2}" y="{top - 4}" '
                   f'text-anchor="middle">{escape(col)}</text>')
    for r, row in enumerate(rows):
        y = top + r * cell
        out.append(f'<text x="{label_w - 4}" y="{y + cell / 2 + 3}" text-anchor="end">'
                   f'{escape(row)}</text>')
        for c, value in enumerate(values[r]):
            x = label_w + c * cell
            if value is None:
                fill, label = "#e5e8e8", "absent"
            elif log and value <= 0:
                fill, label = "#ffffff", "0 (identical)"
            else:
                t = ((math.log10(value) if log else value) - lo) / (hi - lo)
                fill, label = _heat(t), f"{value:.3g}"
            out.append(f'<rect x="{x}" y="{y}" width="{cell - 1}" height="{cell - 1}" '
                       f'fill="{fill}"><title>{escape(row)} × {escape(str(cols[c]))}: '
                       f'{escape(label)}</title></rect>')
    lx = label_w + cell * len(cols) + 10
    for i in range(5):
        t = i / 4
        v = lo + t * (hi - lo)
        shown = f"{10 ** v:.2g}" if log else f"{v:.2g}"
        out.append(f'<rect x="{lx}" y="{top + i * 16}" width="12" height="12" fill="{_heat(t)}"/>'
                   f'<text x="{lx + 16}" y="{top + i * 16 + 10}">{shown}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _heat(t: float) -> str:
    t = min(1.0, max(0.0, t))
    # pale yellow → red
    r, g, b = 255, int(245 - 200 * t), int(200 - 180 * t)
    return f"#{r:02x}{g:02x}{b:02x}"


def line_chart_svg(series: Sequence[tuple[str, Sequence[tuple[float, float]]]], *, title: str,
                   x_label: str, y_label: str, y_range: tuple[float, float] | None = None,
                   bands: Mapping[str, Sequence[tuple[float, float, float]]] | None = None,
                   x_log: bool = False) -> str:  # fmt: skip
    """Lines with markers; ``bands[name]`` gives (x, low, high) whiskers for that series."""
    w, h, left, top, bottom = 560, 260, 60, 30, 40
    xs = [x for _, pts in series for x, _ in pts]
    ys = [y for _, pts in series for _, y in pts]
    for band in (bands or {}).values():
        ys += [v for _, lo, hi in band for v in (lo, hi)]
    if not xs:
        return ""
    fx = (lambda v: math.log10(v)) if x_log else (lambda v: v)
    x0, x1 = fx(min(xs)), fx(max(xs))
    x1 = x1 if x1 > x0 else x0 + 1
    y0, y1 = y_range or (min(ys), max(ys))
    y1 = y1 if y1 > y0 else y0 + 1

    def px(x: float) -> float:
        return left + w * (fx(x) - x0) / (x1 - x0)

    def py(y: float) -> float:
        return top + h * (1 - (y - y0) / (y1 - y0))

    legend_h = 16 * len(series)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + w + 160}" '
           f'height="{top + h + bottom + legend_h}" role="img" aria-label="{escape(title)}" '
           'font-family="sans-serif" font-size="11">',
           f'<text x="0" y="16" font-size="13" font-weight="bold">{escape(title)}</text>',
           f'<line x1="{left}" y1="{top + h}" x2="{left + w}" y2="{top + h}" stroke="#566573"/>',
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + h}" stroke="#566573"/>']
    for i in range(5):
        yv = y0 + (y1 - y0) * i / 4
        out.append(f'<text x="{left - 4}" y="{py(yv) + 3:.1f}" text-anchor="end" '
                   f'fill="#566573">{yv:.3g}</text>'
                   f'<line x1="{left}" y1="{py(yv):.1f}" x2="{left + w}" y2="{py(yv):.1f}" '
                   'stroke="#f2f3f4"/>')
    for xv in sorted(set(xs)):
        out.append(f'<text x="{px(xv):.1f}" y="{top + h + 14}" text-anchor="middle" '
                   f'fill="#566573">{xv:g}</text>')
    out.append(f'<text x="{left + w / 2}" y="{top + h + 30}" text-anchor="middle">'
               f'{escape(x_label)}</text>')
    out.append(f'<text x="12" y="{top + h / 2}" transform="rotate(-90 12 {top + h / 2})" '
               f'text-anchor="middle">{escape(y_label)}</text>')
    for s, (name, pts) in enumerate(series):
        colour = _PALETTE[s % len(_PALETTE)]
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.6"/>')
        for x, y in pts:
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.6" fill="{colour}">'
                       f'<title>{escape(name)}: {x:g} → {y:.4g}</title></circle>')
        for x, lo, hi in (bands or {}).get(name, ()):
            out.append(f'<line x1="{px(x):.1f}" y1="{py(lo):.1f}" x2="{px(x):.1f}" '
                       f'y2="{py(hi):.1f}" stroke="{colour}" stroke-opacity="0.6"/>')
        ly = top + h + bottom + 16 * s
        out.append(f'<rect x="{left}" y="{ly - 9}" width="12" height="10" fill="{colour}"/>'
                   f'<text x="{left + 16}" y="{ly}">{escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out)


@contextmanager
def progress(total: int, label: str, *, enabled: bool = True) -> Iterator[Callable[..., None]]:
    """A rich progress bar on stderr. The callback advances by one, or, given the red-team
    runner's outcome, jumps to its count (so the harness's own progress drives it)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True),
                   disable=not enabled)  # fmt: skip
    task = bar.add_task(label, total=total)

    def update(outcome: Any = None, *_: Any) -> None:
        if outcome is not None and hasattr(outcome, "done"):
            bar.update(task, completed=outcome.done + outcome.skipped)
        else:
            bar.advance(task)

    with bar:
        yield update
