"""``wardgate monitor``: the monitor's suspensions and alerts (a thin shell over
``wardgate.monitor``). Lifting a suspension is itself an audit record (``kind: action``)."""

from __future__ import annotations

from typing import Annotated

import orjson
import typer
from sqlalchemy import select

from wardgate.cli.help import WardgateTyper
from wardgate.cli.keys import ConfigOption, JsonOption, database, load_cli_config
from wardgate.monitor.enforcement import Suspensions
from wardgate.monitor.monitor import action_record
from wardgate.store.auditlog import append_records, export_record
from wardgate.store.tables import audit_log

monitor_app = WardgateTyper(
    help="Suspended keys and alerts raised by the gateway's monitor.", no_args_is_help=True
)


@monitor_app.command("suspended")
def suspended(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """List the keys the monitor has suspended."""
    cfg = load_cli_config(config)
    with database(cfg) as engine:
        rows = Suspensions(engine).list()
    if as_json:
        typer.echo(orjson.dumps([s.as_dict() for s in rows]).decode())
        return
    if not rows:
        typer.echo("no suspended keys")
    for s in rows:
        typer.echo(f"{s.key_id}  {s.created_at:%Y-%m-%d %H:%M:%S}Z  {s.rule}: {s.reason}")


@monitor_app.command("lift")
def lift(
    key_id: Annotated[str, typer.Argument(help="The suspended key's id (key_...).")],
    config: ConfigOption = None,
) -> None:
    """Lift a suspension; gateways let the key in again within two seconds."""
    cfg = load_cli_config(config)
    with database(cfg) as engine:
        if not Suspensions(engine).lift(key_id):
            typer.echo(f"error: {key_id} is not suspended", err=True)
            raise typer.Exit(1)
        append_records(
            engine,
            [action_record("suspension_lifted", key_id=key_id, actor="cli")],
            cfg.audit.store_prompts,
        )
    typer.echo(f"lifted the suspension of {key_id}")


@monitor_app.command("alerts")
def alerts(
    config: ConfigOption = None,
    as_json: JsonOption = False,
    limit: Annotated[int, typer.Option(help="Newest alerts to show.")] = 20,
) -> None:
    """The newest alerts from the audit log."""
    cfg = load_cli_config(config)
    query = (
        select(audit_log)
        .where(audit_log.c.kind == "alert")
        .order_by(audit_log.c.seq.desc())
        .limit(max(1, limit))
    )
    with database(cfg) as engine, engine.connect() as conn:
        rows = [export_record(dict(r)) for r in conn.execute(query).mappings()]
    rows.reverse()
    if as_json:
        typer.echo(orjson.dumps(rows).decode())
        return
    if not rows:
        typer.echo("no alerts")
    for row in rows:
        info = row.get("routing") or {}
        subject = row.get("key_id") or row.get("client_ip") or "-"
        typer.echo(
            f"{row['ts']}  {info.get('rule')}  {subject}  {info.get('action')}  "
            f"{info.get('message')}"
        )


__all__ = ["monitor_app"]
