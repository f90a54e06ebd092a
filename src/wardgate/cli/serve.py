"""``wardgate serve``: check the config, take the port, load the models, serve.

The order is what makes failures cheap and clear. The config is checked first with the same
function ``wardgate config check`` runs, so a missing weights file or an unset vendor key is
one ``ERROR:`` line per problem before anything loads. The listening socket is bound next, so a
port already in use is reported at once, not after a model has spent seconds loading. Only
then is the gateway built and started. Every start-up failure is one ``ERROR`` line and a
non-zero exit (2 for the config, 1 for anything else); ``--debug`` adds the traceback.
"""

from __future__ import annotations

import errno
import logging
import socket
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer

from wardgate.cli.common import EXIT_CONFIG, load_or_exit
from wardgate.config import GatewayConfig
from wardgate.errors import ConfigError

log = logging.getLogger("wardgate.serve")

EXIT_START_FAILED = 1

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="YAML config file (default: the embedded model only).",
        metavar="FILE",
    ),
]


def serve(
    config: ConfigOption = None,
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (overrides server.host).")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(min=0, max=65535, help="Port to listen on (overrides server.port; 0: any)."),
    ] = None,
    access_log: Annotated[
        bool, typer.Option("--access-log", help="Log one line per request.")
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Debug logging, and tracebacks for start-up failures.")
    ] = False,
) -> None:
    """Start the gateway (the embedded SmolLM2 model unless the config says otherwise)."""
    from wardgate.configcheck import check_config

    cfg = load_or_exit(config, prefix="ERROR: ")
    if host is not None:
        cfg.server.host = host
    if port is not None:
        cfg.server.port = port
    level = "DEBUG" if debug else cfg.server.log_level.upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if cfg.telemetry.log_format == "json":
        from wardgate.telemetry.logs import use_json_logs

        use_json_logs(level)
    problems = check_config(cfg)
    if problems:
        for problem in problems:
            typer.echo(f"ERROR: {problem}", err=True)
        typer.echo(
            f"ERROR: cannot start: {len(problems)} problem(s) in "
            f"{config or 'the built-in config'} (see `wardgate config check`)",
            err=True,
        )
        raise typer.Exit(EXIT_CONFIG)
    sock = _listen(cfg.server.host, cfg.server.port)
    cfg.server.port = sock.getsockname()[1]
    try:
        _run(cfg, sock, config_path=config, access_log=access_log, debug=debug)
    except typer.Exit:
        raise
    except ConfigError as exc:
        for line in exc.lines():
            typer.echo(f"ERROR: {line}", err=True)
        _debug_traceback(debug)
        raise typer.Exit(EXIT_CONFIG) from exc
    except Exception as exc:
        typer.echo(f"ERROR: cannot start: {type(exc).__name__}: {exc}", err=True)
        _debug_traceback(debug)
        raise typer.Exit(EXIT_START_FAILED) from exc
    finally:
        sock.close()


def _listen(host: str, port: int) -> socket.socket:
    """Bind the listening socket now (uvicorn serves on it later), or exit with one line."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family=family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            reason = f"port {port} is already in use"
        else:
            reason = exc.strerror or str(exc)
        typer.echo(
            f"ERROR: cannot listen on {host}:{port}: {reason}. Pick another port with "
            "--port N (make run PORT=N), or set server.port in the config.",
            err=True,
        )
        raise typer.Exit(EXIT_START_FAILED) from exc
    sock.set_inheritable(True)
    return sock


class _Lifespan:
    """Wraps the app's lifespan. A failed start-up was already logged in one line by the app,
    so uvicorn is not handed the traceback to print (it is kept for ``--debug``); a finished
    one is announced with the address to use."""

    def __init__(self, app: Any, ready_message: str) -> None:
        self.app = app
        self.ready_message = ready_message
        self.failed = False
        self.traceback = ""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def quiet_send(message: Any) -> None:
            if message["type"] == "lifespan.startup.failed":
                self.failed = True
                self.traceback = str(message.get("message") or "")
                message = {**message, "message": ""}
            elif message["type"] == "lifespan.startup.complete":
                log.info("%s", self.ready_message)
            await send(message)

        await self.app(scope, receive, quiet_send)


class _DropUvicornStartupLine(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "Application startup failed. Exiting."


def _run(
    cfg: GatewayConfig,
    sock: socket.socket,
    *,
    config_path: Path | None,
    access_log: bool,
    debug: bool,
) -> None:
    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    from wardgate.gateway.app import create_app
    from wardgate.gateway.bootstrap import ensure_admin_key
    from wardgate.gateway.service import Gateway

    gateway = Gateway(cfg)
    ensure_admin_key(gateway, echo=typer.echo, config_path=config_path)
    shown = "127.0.0.1" if cfg.server.host in ("0.0.0.0", "::") else cfg.server.host  # noqa: S104
    app = _Lifespan(
        create_app(cfg, gateway=gateway),
        f"Wardgate is ready on http://{shown}:{cfg.server.port}/v1 (Ctrl+C to stop)",
    )
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            loop="uvloop",
            http="httptools",
            access_log=access_log,
            log_level="debug" if debug else cfg.server.log_level,
            timeout_graceful_shutdown=10,
            lifespan="on",
            # JSON logs: uvicorn's records go through the root logger's JSON formatter.
            log_config=None if cfg.telemetry.log_format == "json" else LOGGING_CONFIG,
        )
    )
    quiet = _DropUvicornStartupLine()
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.addFilter(quiet)
    try:
        server.run(sockets=[sock])
    except SystemExit as exc:  # uvicorn exits this way when start-up fails
        if not app.failed:
            raise
        if debug and app.traceback:
            typer.echo(app.traceback, err=True)
        raise typer.Exit(EXIT_START_FAILED) from exc
    finally:
        uvicorn_log.removeFilter(quiet)
    if app.failed:
        raise typer.Exit(EXIT_START_FAILED)


def _debug_traceback(debug: bool) -> None:
    if debug:
        typer.echo(traceback.format_exc(), err=True)
