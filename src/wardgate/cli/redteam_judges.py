"""``wardgate redteam judges``: how far each judge agrees with human labels."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from wardgate.cli.help import WardgateTyper
from wardgate.errors import WardgateError

judges_app = WardgateTyper(
    help="Validate red-team judges against human-labelled (request, answer) pairs.",
    no_args_is_help=True,
)


@judges_app.command("validate")
def validate(
    judge: Annotated[list[str] | None, typer.Option(
        "--judge", "-j", help="pair_minilm, rules, compliance_heuristic, guard:harmful or auto. "
        "Repeatable. Default: all that can be built here.")] = None,
    labelled: Annotated[Path | None, typer.Option(
        "--set", help="Your own labelled JSONL (request, answer, label in comply/partial/"
        "refuse/off_topic). Default: the shipped set.")] = None,
    split: Annotated[str, typer.Option(
        help="Which split of the set: test (default for the shipped set), val, train, all. "
        "A file without a split column counts as test.")] = "test",
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """Agreement (with a Wilson interval), Cohen's kappa and the confusion matrix per judge."""
    from wardgate.redteam.judges.validate import (
        JUDGE_NAMES,
        format_result,
        judge_by_name,
        read_set,
    )
    from wardgate.redteam.judges.validate import validate as run_validation

    try:
        items = read_set(labelled, split=split)
    except WardgateError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from exc
    names = judge or list(JUDGE_NAMES)
    results = []
    for name in names:
        try:
            built = judge_by_name(name)
        except WardgateError as exc:
            if judge:
                typer.echo(f"error: {exc.message}", err=True)
                raise typer.Exit(2) from exc
            typer.echo(f"skipped {name}: {exc.message}", err=True)
            continue
        results.append(run_validation(built, items))
    if as_json:
        typer.echo(json.dumps({"set": str(labelled or "shipped"), "split": split,
                               "results": results}, indent=2))
        return
    typer.echo(f"{len(items)} labelled items ({'shipped set' if labelled is None else labelled}"
               f", split {split})")
    for result in results:
        for line in format_result(result):
            typer.echo(line)
