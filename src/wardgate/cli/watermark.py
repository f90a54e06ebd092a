"""``wardgate watermark detect``: look for a model's watermark in a text, offline.

Needs the config naming the model (its GGUF file and watermark settings) and the watermark
key (environment variable or key file); loads the vocabulary only. Exit status: 0 watermarked,
1 not watermarked, 3 insufficient tokens to decide, 2 unusable input or configuration.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal

import orjson
import typer

from wardgate.cli.common import EXIT_CONFIG
from wardgate.cli.help import WardgateTyper
from wardgate.cli.keys import ConfigOption, JsonOption, load_cli_config
from wardgate.errors import WardgateError

watermark_app = WardgateTyper(
    help="Detect the text watermark of in-house models.", no_args_is_help=True
)

EXIT_NOT_WATERMARKED = 1
EXIT_INSUFFICIENT = 3


@watermark_app.command("detect")
def detect(
    file: Annotated[str, typer.Argument(help="Text file to examine, or - for standard input.")],
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Model whose watermark to look for.")
    ] = None,
    key_id: Annotated[
        str | None, typer.Option("--key-id", help="Expected key id (e.g. from a receipt).")
    ] = None,
    threshold: Annotated[
        float | None, typer.Option("--threshold", help="z-score threshold (default: config).")
    ] = None,
    windows: Annotated[
        str, typer.Option("--windows", help="Window scan: auto, always or never.")
    ] = "auto",
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Score a text for the watermark: z-score, p-value, tokens scored and a verdict."""
    from wardgate.provenance.detector import WatermarkDetector

    if windows not in ("auto", "always", "never"):
        raise typer.BadParameter("expected auto, always or never", param_hint="--windows")
    mode: Literal["auto", "always", "never"] = windows  # type: ignore[assignment]
    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        typer.echo(f"error: cannot read {file}: {exc}", err=True)
        raise typer.Exit(EXIT_CONFIG) from exc
    cfg = load_cli_config(config)
    detector = None
    try:
        detector = WatermarkDetector.from_config(cfg)
        report = detector.detect(
            text, model=model, key_id=key_id, threshold=threshold, windows=mode
        )
    except WardgateError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(EXIT_CONFIG) from exc
    finally:
        if detector is not None:
            detector.close()
    if as_json:
        typer.echo(orjson.dumps(report).decode())
    else:
        verdict = str(report["verdict"]).replace("_", " ")
        typer.echo(
            f"{verdict}: z = {report['z']:.2f}, p = {report['p_value']:.3g} over "
            f"{report['tokens_scored']} scored tokens of {report['tokens']} "
            f"({report['tokens_repeated']} repeated, skipped); "
            f"threshold z >= {report['threshold']:g}"
        )
        window = report.get("best_window")
        if report["tests"] > 1:
            best = (
                f"best z = {window['z']:.2f} (scored tokens {window['start']}-{window['end']})"
                if window
                else "none beat the whole text"
            )
            typer.echo(
                f"  windows: {best}; corrected for {report['tests']} tests: "
                f"z = {report['z_corrected']:.2f}, p = {report['p_corrected']:.3g}"
            )
        typer.echo(f"  model {report['model']}, scheme {report['scheme']}, key {report['key_id']}")
        if report.get("message"):
            typer.echo(f"  {report['message']}")
    if report["verdict"] == "not_watermarked":
        raise typer.Exit(EXIT_NOT_WATERMARKED)
    if report["verdict"] == "insufficient_tokens":
        raise typer.Exit(EXIT_INSUFFICIENT)
