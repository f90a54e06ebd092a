"""``wardgate audit``: verify the hash chain, export it as JSON Lines, and show recent records.

``verify`` exits 0 when the chain is intact and 1 when it is not, so it can run from cron or CI.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from wardgate.cli.help import WardgateTyper
from wardgate.cli.keys import ConfigOption, JsonOption, database, load_cli_config
from wardgate.store.audit import ChainReport, export_jsonl, read_since, tail, verify_chain
from wardgate.store.auditlog import verify_jsonl

audit_app = WardgateTyper(
    help="Verify, export and inspect the tamper-evident audit log.", no_args_is_help=True
)


def _report(report: ChainReport, as_json: bool) -> None:
    if as_json:
        typer.echo(orjson.dumps(report.as_dict()).decode())
    elif report.ok:
        typer.echo(f"ok: {report.checked} record(s), chain intact up to record {report.last_seq}")
    else:
        typer.echo(
            f"FAILED: record {report.first_bad_seq} {report.kind}: {report.message} "
            f"({report.checked} record(s) before it verified)"
        )
    if not report.ok:
        raise typer.Exit(1)


def _parse_pin(pin: str | None) -> tuple[int, str] | None:
    if pin is None:
        return None
    seq, _, digest = pin.partition(":")
    if not seq.isdigit() or len(digest) != 64:
        raise typer.BadParameter("expected SEQ:HASH (64 hex digits)", param_hint="--pin")
    return int(seq), digest.lower()


@audit_app.command("verify")
def verify(
    file: Annotated[
        Path | None,
        typer.Option("--file", "-f", help="Verify an export offline instead of the database."),
    ] = None,
    pin: Annotated[
        str | None,
        typer.Option(
            "--pin", help="SEQ:HASH from an earlier export; that record must still match."
        ),
    ] = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Recompute every hash; report the first altered, inserted or missing record."""
    anchor = _parse_pin(pin)
    if file is not None:
        if not file.is_file():
            typer.echo(f"error: no such file: {file}", err=True)
            raise typer.Exit(2)
        _report(verify_jsonl(file, anchor), as_json)
        return
    with database(load_cli_config(config)) as engine:
        report = verify_chain(engine, anchor)
    _report(report, as_json)


@audit_app.command("export")
def export(
    path: Annotated[Path, typer.Argument(help="Output file (JSON Lines); written atomically.")],
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Write every record, with its chain hashes, to PATH (all or nothing)."""
    with database(load_cli_config(config)) as engine:
        result = export_jsonl(engine, path)
    summary = {
        "path": str(result.path),
        "records": result.records,
        "last_seq": result.last_seq,
        "last_hash": result.last_hash,
    }
    if as_json:
        typer.echo(orjson.dumps(summary).decode())
    else:
        typer.echo(
            f"exported {result.records} record(s) to {result.path}; "
            f"last record {result.last_seq}, hash {result.last_hash or '-'}\n"
            f"pin it elsewhere and check later with: wardgate audit verify "
            f"--pin {result.last_seq}:{result.last_hash or '-'}"
        )


def _line(record: dict[str, Any]) -> str:
    error = f" {record['error_code']}" if record["error_code"] else ""
    return (
        f"{record['seq']:>8} {record['ts']} {record['kind']:<7} {record['status']:>3} "
        f"{record['model_asked'] or '-'} -> {record['backend_used'] or '-'} "
        f"key={record['key_id'] or '-'} tokens={record['prompt_tokens']}+"
        f"{record['completion_tokens']} {record['latency_ms']:.1f}ms{error}"
    )


def _emit(records: list[dict[str, Any]], as_json: bool) -> None:
    for record in records:
        typer.echo(orjson.dumps(record).decode() if as_json else _line(record))


@audit_app.command("tail")
def tail_cmd(
    lines: Annotated[int, typer.Option("--lines", "-n", min=0, help="How many records.")] = 20,
    follow: Annotated[bool, typer.Option("--follow", help="Keep printing new records.")] = False,
    interval: Annotated[float, typer.Option(min=0.05, help="Poll interval with --follow.")] = 1.0,
    polls: Annotated[
        int | None, typer.Option(hidden=True, help="Stop after this many polls (tests).")
    ] = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Show the newest records (one per line, or JSON Lines with --json)."""
    with database(load_cli_config(config)) as engine:
        records = tail(engine, lines)
        _emit(records, as_json)
        if not follow:
            return
        newest = records or tail(engine, 1)
        last = newest[-1]["seq"] if newest else 0
        done = 0
        try:
            while polls is None or done < polls:
                time.sleep(interval)
                done += 1
                new = read_since(engine, last)
                _emit(new, as_json)
                if new:
                    last = new[-1]["seq"]
        except KeyboardInterrupt:
            return
