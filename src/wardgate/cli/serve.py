"""``wardgate serve`` and ``wardgate config check``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from wardgate.config import GatewayConfig, load_config
from wardgate.errors import ConfigError

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config file (default: the embedded model only)."),
]

config_app = typer.Typer(help="Inspect and validate configuration.", no_args_is_help=True)


def _load(path: Path | None) -> GatewayConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from exc


@config_app.command("check")
def config_check(config: ConfigOption = None) -> None:
    """Validate a config file and print what it defines."""
    cfg = _load(config)
    typer.echo(f"ok: {len(cfg.models)} model(s)")
    for model in cfg.models:
        tags = model.tags
        fallbacks = f" -> {', '.join(model.fallbacks)}" if model.fallbacks else ""
        typer.echo(
            f"  {model.name}: backend={model.backend} deployment={model.deployment} "
            f"weights={tags.weights} region={tags.region}{fallbacks}"
        )
    for warning in cfg.deployment_warnings():
        typer.echo(f"warning: {warning}")
    typer.echo(f"  input guards: {', '.join(g.type for g in cfg.guards.input) or 'none'}")
    typer.echo(f"  output guards: {', '.join(g.type for g in cfg.guards.output) or 'none'}")


def serve(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Override server.host.")] = None,
    port: Annotated[int | None, typer.Option(help="Override server.port.")] = None,
    access_log: Annotated[bool, typer.Option(help="Log one line per request.")] = False,
) -> None:
    """Start the gateway (the embedded SmolLM2 model unless the config says otherwise)."""
    import uvicorn

    from wardgate.gateway.app import create_app
    from wardgate.gateway.bootstrap import ensure_admin_key
    from wardgate.gateway.service import Gateway

    cfg = _load(config)
    if host is not None:
        cfg.server.host = host
    if port is not None:
        cfg.server.port = port
    logging.basicConfig(
        level=cfg.server.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        gateway = Gateway(cfg)
    except ConfigError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from exc
    ensure_admin_key(gateway, echo=typer.echo)
    uvicorn.run(
        create_app(cfg, gateway=gateway),
        host=cfg.server.host,
        port=cfg.server.port,
        loop="uvloop",
        http="httptools",
        access_log=access_log,
        log_level=cfg.server.log_level,
        timeout_graceful_shutdown=10,
    )
