"""``wardgate redteam``: attack a model or the gateway, report, compare, and gate a deployment.

Exit codes: 0 ok, 1 a ``--fail-above`` threshold was exceeded, 2 bad input (config, suite,
target spec, run directory), 3 the target could not be reached or rejected the key.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from wardgate.cli.help import WardgateTyper
from wardgate.cli.redteam_judges import judges_app
from wardgate.errors import ConfigError, UpstreamError, WardgateError
from wardgate.redteam.gate import GateResult, parse_thresholds
from wardgate.redteam.harness import (
    HARM_JUDGES,
    HarmJudgeChoice,
    Selection,
    build_panel,
    compare_runs,
    load_run,
    rejudge_run,
    run_campaign,
    write_reports,
)
from wardgate.redteam.runner import RunSettings, progress_bar
from wardgate.redteam.suites import builtin_manifest, load_builtin
from wardgate.redteam.summary import judge_line
from wardgate.redteam.targets import Target, parse_target

redteam_app = WardgateTyper(
    help="Red-team a model or the gateway: attack suites, judges, statistics, reports, gates.",
    no_args_is_help=True,
)
redteam_app.add_typer(judges_app, name="judges")

FailAbove = Annotated[
    list[str] | None,
    typer.Option("--fail-above", help="CATEGORY=RATE (or overall=, false_refusal=); exit 1 "
                 "when the measured rate is above RATE. Repeatable."),
]
GateOnOpt = Annotated[
    str, typer.Option("--gate-on", help="Compare the point estimate ('rate') or the Wilson "
                      "95% upper bound ('upper') with each threshold.")
]


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _target(spec: str, config: Path | None, model: str | None, key_env: str | None,
            name: str | None, timeout: float) -> Target:  # fmt: skip
    try:
        return parse_target(spec, config_path=config, model=model, api_key_env=key_env,
                            name=name, timeout_s=timeout)
    except ConfigError as exc:
        raise _fail(exc.message) from exc


def _print_gate(gate: list[GateResult]) -> bool:
    for g in gate:
        shown = "no data" if g.measured is None else f"{g.measured:.3f}"
        typer.echo(f"gate {g.name}: {shown} (limit {g.limit:g}) {'pass' if g.passed else 'FAIL'}")
    return all(g.passed for g in gate)


@redteam_app.command("run")
def run(
    target: Annotated[str, typer.Option("--target", "-t", help="model:NAME, embedded, "
                                        "openai:URL, anthropic:URL or gateway:URL.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory (resumable).")],
    suite: Annotated[list[str] | None, typer.Option(
        "--suite", "-s", help="Shipped suite name, 'all', a .jsonl/.yaml file or directory, or "
        "a wardgate.suites entry point. Repeatable.")] = None,
    category: Annotated[list[str] | None, typer.Option(
        "--category", help="Only these categories. Repeatable.")] = None,
    limit_per_category: Annotated[int | None, typer.Option(
        help="At most this many items per category (quick runs).", min=1)] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c",
                      help="Gateway config for model:NAME targets.")] = None,
    model: Annotated[str | None, typer.Option(help="Model name sent to URL targets.")] = None,
    api_key_env: Annotated[str | None, typer.Option(
        help="Environment variable holding the target's API key.")] = None,
    name: Annotated[str | None, typer.Option(help="Label for the target in reports.")] = None,
    repeats: Annotated[int, typer.Option(min=1, help="Attempts per item.")] = 1,
    seed: Annotated[int, typer.Option(help="Base seed; per-attempt seeds derive from it.")] = 0,
    temperature: Annotated[list[float] | None, typer.Option(
        help="Temperatures cycled over repeats. Repeatable. Default 0.")] = None,
    max_tokens: Annotated[int, typer.Option(min=1, help="Answer length cap per attempt.")] = 128,
    concurrency: Annotated[int, typer.Option(min=1, help="Attempts in flight.")] = 1,
    timeout: Annotated[float, typer.Option(help="Seconds per target call.")] = 120.0,
    retries: Annotated[int, typer.Option(min=0, help="Retries on retryable errors.")] = 2,
    attacker: Annotated[str | None, typer.Option(
        help="Target spec of the attacker model for multi-turn items (default: scripted "
        "escalation).")] = None,
    judge: Annotated[str | None, typer.Option(
        help="Target spec of an LLM judge (StrongREJECT rubric) for harmful items.")] = None,
    harm_judge: Annotated[str, typer.Option(
        help="Judge of harmful items' answers: auto (the validated default: the judge that "
        "agrees best with the labelled set's train+val labels, pair_minilm with MiniLM, else "
        "rules), pair_minilm, rules, guard (the request detector over the answer; weak), "
        "compliance. See 'wardgate redteam judges validate'.")] = "auto",
    fail_above: FailAbove = None,
    gate_on: GateOnOpt = "rate",
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Attack one target with the selected suites and write reports into --out."""
    try:
        thresholds = parse_thresholds(fail_above or [])
    except ConfigError as exc:
        raise _fail(exc.message) from exc
    if gate_on not in ("rate", "upper"):
        raise _fail("--gate-on must be 'rate' or 'upper'")
    if harm_judge not in HARM_JUDGES:
        raise _fail(f"--harm-judge must be one of {', '.join(HARM_JUDGES)}")
    the_target = _target(target, config, model, api_key_env, name, timeout)
    the_attacker = _target(attacker, config, None, None, None, timeout) if attacker else None
    judge_target = _target(judge, config, None, None, None, timeout) if judge else None
    settings = RunSettings(repeats=repeats, seed=seed, temperatures=tuple(temperature or [0.0]),
                           max_tokens=max_tokens, concurrency=concurrency, timeout_s=timeout,
                           retries=retries)
    selection = Selection(tuple(suite or ["all"]), tuple(category or []), limit_per_category)
    harm: HarmJudgeChoice = harm_judge  # type: ignore[assignment]

    async def go() -> None:
        if judge_target is not None:
            await judge_target.start()
        try:
            panel = build_panel(harm, judge_target)
            outcome = await run_campaign(
                the_target, selection, out, settings, panel=panel, attacker=the_attacker,
                progress_factory=lambda total, label: progress_bar(total, label,
                                                                   enabled=progress))
        finally:
            if judge_target is not None:
                await judge_target.aclose()
        typer.echo(f"{outcome.done} attempts run, {outcome.skipped} already done, "
                   f"{outcome.errors} errors in {outcome.wall_s:.1f} s "
                   f"(model {outcome.model_s:.1f} s)")

    try:
        asyncio.run(go())
    except UpstreamError as exc:
        raise _fail(exc.message, 3) from exc
    except WardgateError as exc:
        raise _fail(exc.message) from exc
    gate = write_reports(out, thresholds, gate_on)  # type: ignore[arg-type]
    _print_summary(out)
    typer.echo(f"reports: {out / 'report.html'}, summary.json, junit.xml, results.sarif")
    if not _print_gate(gate):
        raise typer.Exit(1)


def _print_summary(run_dir: Path) -> None:
    _, _, summary = load_run(run_dir)
    typer.echo(judge_line(summary.get("judges") or {}))
    typer.echo(f"{'category':<28}{'rate':>8}  {'95% CI':<17}{'n':>5}")
    rows = dict(summary["categories"])
    rows["overall (attacks)"] = summary["overall"]
    rows["false_refusal (benign)"] = summary["false_refusal"]
    for cat, e in rows.items():
        ci = f"{100 * e['ci_low']:.1f}–{100 * e['ci_high']:.1f}%"
        typer.echo(f"{cat:<28}{100 * e['rate']:>7.1f}%  {ci:<17}{e['n']:>5}")


@redteam_app.command("rejudge")
def rejudge(
    run_dir: Annotated[Path, typer.Argument(help="A run directory made by 'redteam run'.")],
    harm_judge: Annotated[str, typer.Option(help="Judge to re-score harmful items with.")]
    = "auto",
    fail_above: FailAbove = None,
    gate_on: GateOnOpt = "rate",
) -> None:
    """Re-score a finished run's stored answers with another judge (no model calls)."""
    if harm_judge not in HARM_JUDGES:
        raise _fail(f"--harm-judge must be one of {', '.join(HARM_JUDGES)}")
    try:
        thresholds = parse_thresholds(fail_above or [])
        changed = rejudge_run(run_dir, build_panel(harm_judge))  # type: ignore[arg-type]
        gate = write_reports(run_dir, thresholds, gate_on)  # type: ignore[arg-type]
    except WardgateError as exc:
        raise _fail(exc.message) from exc
    typer.echo(f"{changed} verdicts changed")
    _print_summary(run_dir)
    if not _print_gate(gate):
        raise typer.Exit(1)


@redteam_app.command("report")
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run directory made by 'redteam run'.")],
    fail_above: FailAbove = None,
    gate_on: GateOnOpt = "rate",
) -> None:
    """Rewrite the HTML, JSON, JUnit and SARIF reports of a run (and re-check a gate)."""
    try:
        thresholds = parse_thresholds(fail_above or [])
        gate = write_reports(run_dir, thresholds, gate_on)  # type: ignore[arg-type]
    except WardgateError as exc:
        raise _fail(exc.message) from exc
    _print_summary(run_dir)
    if not _print_gate(gate):
        raise typer.Exit(1)


@redteam_app.command("compare")
def compare(
    runs: Annotated[list[Path], typer.Argument(help="Two or more run directories; the first "
                                               "is the baseline.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write comparison.json and "
                                             "comparison.html here.")] = None,
) -> None:
    """Paired comparison (McNemar) of runs on the same items, per category."""
    if len(runs) < 2:
        raise _fail("compare needs at least two run directories")
    try:
        result = compare_runs(runs, out)
    except WardgateError as exc:
        raise _fail(exc.message) from exc
    for comp in result["comparisons"]:
        typer.echo(f"{comp['baseline']} -> {comp['other']}: {comp['pairs']} paired attempts")
        typer.echo(f"  {'category':<26}{'base':>8}{'other':>8}{'rel.red.':>10}{'b/c':>9}"
                   f"{'p':>10}")
        rows = dict(comp["categories"])
        rows["overall (attacks)"] = comp["overall"]
        rows["false_refusal (benign)"] = comp["false_refusal"]
        for cat, e in rows.items():
            red = e["relative_reduction"]
            mc = e["mcnemar"]
            typer.echo(f"  {cat:<26}{100 * e['baseline']['rate']:>7.1f}%"
                       f"{100 * e['other']['rate']:>7.1f}%"
                       f"{'–' if red is None else f'{100 * red:.1f}%':>10}"
                       f"{mc['a_only']:>5}/{mc['b_only']:<3}{mc['p_value']:>10.3g}")
    if out is not None:
        typer.echo(f"written: {out / 'comparison.html'}, {out / 'comparison.json'}")


@redteam_app.command("suites")
def suites(
    verify: Annotated[bool, typer.Option(help="Check every shipped file's SHA-256.")] = False,
) -> None:
    """List the shipped suites (name, version, items, categories)."""
    manifest = builtin_manifest()
    typer.echo(f"shipped suites, version {manifest['version']}:")
    for name, entry in sorted(manifest["suites"].items()):
        status = ""
        if verify:
            try:
                load_builtin(name)
                status = "  sha256 ok"
            except WardgateError as exc:
                raise _fail(exc.message) from exc
        typer.echo(f"  {name:<26}{entry['items']:>4} items  {entry['sha256'][:12]}{status}")
