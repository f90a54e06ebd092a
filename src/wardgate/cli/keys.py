"""``wardgate keys``: create, list, revoke and rotate API keys (a thin shell over ``KeyStore``).

Raw keys are printed exactly once, by ``create`` and ``rotate``; every other view shows the
non-secret prefix. ``--json`` gives machine-readable output for scripts.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import orjson
import typer
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from wardgate.cli.common import load_or_exit
from wardgate.cli.help import WardgateTyper
from wardgate.config import GatewayConfig
from wardgate.errors import ConfigError, WardgateError
from wardgate.store.db import open_database
from wardgate.store.keys import ApiKey, KeyStore
from wardgate.store.secret import load_or_create_secret

keys_app = WardgateTyper(help="Create, list, revoke and rotate API keys.", no_args_is_help=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config file (default: the built-in defaults)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]

_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def load_cli_config(path: Path | None) -> GatewayConfig:
    """The config, or exit 2 with one ``path: problem`` line per problem."""
    return load_or_exit(path)


@contextmanager
def database(config: GatewayConfig) -> Iterator[Engine]:
    """An engine on the configured database, migrated to the newest schema."""
    try:
        engine = open_database(config.database_url)
    except ConfigError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from exc
    try:
        yield engine
    finally:
        engine.dispose()


@contextmanager
def _store(config_path: Path | None) -> Iterator[KeyStore]:
    with _store_and_config(config_path) as (store, _config):
        yield store


def _announce(config: GatewayConfig, key_id: str) -> None:
    """Tell running gateways at once (Redis pub/sub); else they notice within the cache TTL."""
    from wardgate.gateway.key_events import announce_key_change

    if config.redis_url and not announce_key_change(config.redis_url, key_id):
        typer.echo(
            "note: Redis did not take the change notice; gateways notice within "
            f"auth.key_cache_ttl_s ({config.auth.key_cache_ttl_s:g} s)",
            err=True,
        )


@contextmanager
def _store_and_config(config_path: Path | None) -> Iterator[tuple[KeyStore, GatewayConfig]]:
    config = load_cli_config(config_path)
    try:
        secret = load_or_create_secret(config.auth)
    except ConfigError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from exc
    with database(config) as engine:
        try:
            yield KeyStore(engine, secret), config
        except WardgateError as exc:
            typer.echo(f"error: {exc.message}", err=True)
            raise typer.Exit(2 if isinstance(exc, ConfigError) else 1) from exc
        except SQLAlchemyError as exc:
            # One line, the type only: the driver's message may quote values.
            typer.echo(
                f"error: the database refused the operation ({type(exc).__name__})", err=True
            )
            raise typer.Exit(1) from exc


def parse_expiry(text: str | None, now: datetime | None = None) -> datetime | None:
    """``30d``/``12h``/``90m``/``2w`` from now, or an ISO-8601 time (UTC if no offset given)."""
    if text is None or text.strip().lower() in ("", "never"):
        return None
    text = text.strip()
    match = _DURATION.match(text)
    if match:
        delta = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
        return (now or datetime.now(UTC)) + delta
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise typer.BadParameter(
            "use a duration like 30d, 12h, 90m, 2w or an ISO-8601 time", param_hint="--expires"
        ) from exc
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _print_secret(key: ApiKey, raw: str, verb: str, as_json: bool) -> None:
    if as_json:
        typer.echo(orjson.dumps({**key.as_dict(), "key": raw}).decode())
        return
    typer.echo(f"{verb} key {key.id} ({key.display}) for {key.owner}.")
    typer.echo("It is shown only this once; store it now:\n")
    typer.echo(f"    {raw}\n")


@keys_app.command("create")
def create(
    owner: Annotated[str, typer.Option("--owner", "-o", help="Who the key belongs to.")],
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model", "-m", help="A model the key may call; repeat for more (default: all)."
        ),
    ] = None,
    models: Annotated[
        str | None,
        typer.Option(
            "--models",
            help="Models the key may call, comma-separated (like the admin API's models list).",
            metavar="A,B",
        ),
    ] = None,
    tier: Annotated[str, typer.Option(help="Tier name used by the routing policy.")] = "standard",
    rpm: Annotated[int | None, typer.Option(min=0, help="Requests/minute (0: default).")] = None,
    tpm: Annotated[int | None, typer.Option(min=0, help="Tokens/minute (0: default).")] = None,
    expires: Annotated[
        str | None, typer.Option(help="Expiry: 30d, 12h, 2w, or an ISO-8601 time.")
    ] = None,
    admin: Annotated[bool, typer.Option("--admin", help="May use the admin API.")] = False,
    scope: Annotated[
        list[str] | None,
        typer.Option("--scope", help="Extra permission, repeatable: watermark:detect."),
    ] = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Create a key and print it (once)."""
    expires_at = parse_expiry(expires)
    with _store(config) as store:
        record, raw = store.create(
            owner=owner,
            models=_model_list(model, models),
            tier=tier,
            rpm=rpm,
            tpm=tpm,
            expires_at=expires_at,
            admin=admin,
            scopes=scope or [],
        )
    _print_secret(record, raw, "Created", as_json)


def _model_list(repeated: list[str] | None, listed: str | None) -> list[str]:
    """``--model a --model b`` and ``--models a,b`` combine; neither means every model."""
    names = list(repeated or [])
    names += [n.strip() for n in (listed or "").split(",") if n.strip()]
    return list(dict.fromkeys(names)) or ["*"]


@keys_app.command("list")
def list_keys(
    show_all: Annotated[bool, typer.Option("--all", "-a", help="Include revoked keys.")] = False,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """List keys (prefixes only; secrets are never shown again)."""
    with _store(config) as store:
        records = store.list(include_revoked=show_all)
    if as_json:
        typer.echo(orjson.dumps([k.as_dict() for k in records]).decode())
        return
    if not records:
        typer.echo("no keys")
        return
    header = ("ID", "PREFIX", "OWNER", "MODELS", "TIER", "RPM", "TPM", "ADMIN", "STATUS", "EXPIRES")
    rows = [header] + [
        (
            k.id,
            k.display,
            k.owner,
            ",".join(k.models),
            k.tier,
            str(k.rpm or "-"),
            str(k.tpm or "-"),
            "yes" if k.admin else "no",
            k.status(),
            k.expires_at.strftime("%Y-%m-%d %H:%M") if k.expires_at else "never",
        )
        for k in records
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        line = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        typer.echo(line.rstrip())


@keys_app.command("revoke")
def revoke(
    key: Annotated[str, typer.Argument(help="Key id or prefix (wg-abcd1234).")],
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Revoke a key at once (gateways sharing redis_url at once, others within
    auth.key_cache_ttl_s)."""
    with _store_and_config(config) as (store, cfg):
        record = store.revoke(store.find(key).id)
        _announce(cfg, record.id)
    if as_json:
        typer.echo(orjson.dumps(record.as_dict()).decode())
    else:
        typer.echo(f"Revoked key {record.id} ({record.display}) of {record.owner}.")


@keys_app.command("rotate")
def rotate(
    key: Annotated[str, typer.Argument(help="Key id or prefix (wg-abcd1234).")],
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Issue a new secret with the same settings and revoke the old one."""
    with _store_and_config(config) as (store, cfg):
        old = store.find(key).id
        record, raw = store.rotate(old)
        _announce(cfg, old)
    _print_secret(record, raw, "Rotated; new", as_json)
