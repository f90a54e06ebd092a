"""``wardgate config check`` and ``wardgate config show``.

``check`` runs :func:`wardgate.configcheck.check_config`, the same function ``serve`` runs before
it loads anything, so "ok" here means ``serve`` accepts the file. ``show`` prints the config as
the gateway will use it: every default filled in (guard options too), secrets masked.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
import yaml

from wardgate.cli.common import EXIT_CONFIG, load_or_exit
from wardgate.cli.help import WardgateTyper
from wardgate.config import GatewayConfig, load_config
from wardgate.configcheck import check_config
from wardgate.errors import ConfigError, ConfigProblem

config_app = WardgateTyper(help="Validate and show configuration.", no_args_is_help=True)

FileArgument = Annotated[
    Path | None,
    typer.Argument(
        help="YAML config file (same as --config; default: the built-in defaults).",
        metavar="FILE",
        show_default=False,
    ),
]
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="YAML config file (default: the built-in defaults).", metavar="FILE"
    ),
]


def _config_path(file: Path | None, option: Path | None) -> Path | None:
    if file is not None and option is not None and file != option:
        raise typer.BadParameter("give the config file once, as FILE or as --config")
    return file or option


@config_app.command("check")
def config_check(file: FileArgument = None, config: ConfigOption = None) -> None:
    """Find every problem serve would stop on, without the network; one `path: problem` line
    each, exit 2 if there is any."""
    path = _config_path(file, config)
    try:
        cfg = load_config(path)
    except ConfigError as exc:  # not even a config: unreadable, not YAML, or invalid fields
        problems = list(exc.problems) or [ConfigProblem("", exc.message)]
    else:
        problems = check_config(cfg)
    if problems:
        for problem in problems:
            typer.echo(str(problem))
        typer.echo(
            f"{path or 'the built-in config'}: {len(problems)} problem(s); serve would refuse it",
            err=True,
        )
        raise typer.Exit(EXIT_CONFIG)
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
    typer.echo(f"  input guards: {', '.join(g.label for g in cfg.guards.input) or 'none'}")
    typer.echo(f"  output guards: {', '.join(g.label for g in cfg.guards.output) or 'none'}")


@config_app.command("show")
def config_show(
    file: FileArgument = None,
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of YAML.")] = False,
) -> None:
    """Print the effective config: defaults filled in, secrets in URLs and options masked."""
    path = _config_path(file, config)
    effective = effective_config(load_or_exit(path))
    if as_json:
        typer.echo(orjson.dumps(effective, option=orjson.OPT_INDENT_2).decode())
        return
    typer.echo(f"# effective configuration of {path or 'the built-in defaults'}")
    typer.echo("# (defaults filled in, secrets masked)")
    typer.echo(yaml.safe_dump(effective, sort_keys=False, allow_unicode=True).rstrip())


def effective_config(config: GatewayConfig) -> dict[str, Any]:
    """The config as plain data with every default present and every secret masked."""
    data = config.model_dump(mode="json")
    _fill_guard_options(data)
    masked: dict[str, Any] = _mask(data)
    return masked


def _fill_guard_options(data: dict[str, Any]) -> None:
    """Replace each guard's ``options`` by the validated options (defaults included)."""
    from wardgate.errors import ConfigError
    from wardgate.guards.registry import GuardRegistry

    registry = GuardRegistry()
    guards = data.get("guards") or {}
    lists = [guards.get("input") or [], guards.get("output") or []]
    for route in (guards.get("routes") or {}).values():
        lists += [route.get("input") or [], route.get("output") or []]
    for specs in lists:
        for spec in specs:
            try:
                options = registry.resolve(spec["type"]).Options.model_validate(spec["options"])
            except (ConfigError, ValueError):
                continue  # `config check` reports it; show what was written
            spec["options"] = options.model_dump(mode="json")


#: Keys whose string values are secrets themselves. ``*_env`` and ``*_file`` keys only *name*
#: where a secret is, so they are shown.
_SECRET_KEY = re.compile(
    r"(^|_)(password|passwd|secret|token|api_?key|authorization|credentials?)$", re.IGNORECASE
)
_URL_PASSWORD = re.compile(r"(://[^/:@\s]*:)[^@/\s]+@")
_QUERY_SECRET = re.compile(
    r"([?&](?:password|passwd|pass|secret|token|api_?key|key)=)[^&#]*", re.IGNORECASE
)
MASK = "***"


def _mask(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _mask(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v, key) for v in value]
    if isinstance(value, str):
        if _SECRET_KEY.search(key) and value:
            return MASK
        return _QUERY_SECRET.sub(rf"\g<1>{MASK}", _URL_PASSWORD.sub(rf"\g<1>{MASK}@", value))
    return value
