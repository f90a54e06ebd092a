"""What every ``wardgate`` command shares: loading the config, and failing in one line each."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import typer

from wardgate.config import GatewayConfig, load_config
from wardgate.errors import ConfigError

#: Exit status of a command whose configuration is unusable (same for every command).
EXIT_CONFIG = 2


def config_failure(
    exc: ConfigError, *, source: Path | None = None, prefix: str = "error: "
) -> NoReturn:
    """Print each problem of ``exc`` as one line on stderr and exit :data:`EXIT_CONFIG`.

    Problems (``yaml.path: problem``) are prefixed with the file they are in, when known.
    """
    where = f"{source}: " if source is not None and exc.problems else ""
    for line in exc.lines():
        typer.echo(f"{prefix}{where}{line}", err=True)
    raise typer.Exit(EXIT_CONFIG) from exc


def load_or_exit(path: Path | None, *, prefix: str = "error: ") -> GatewayConfig:
    """The validated config (the built-in default for ``None``), or exit with its problems."""
    try:
        return load_config(path)
    except ConfigError as exc:
        config_failure(exc, source=path, prefix=prefix)
