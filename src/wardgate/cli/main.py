"""The ``wardgate`` command: a thin shell over the Python API, one sub-app per concept."""

from __future__ import annotations

import importlib

import typer

from wardgate.cli.serve import config_app, serve

app = typer.Typer(
    name="wardgate",
    help="Security gateway and assurance kit for open-weight and vendor LLMs.",
    no_args_is_help=True,
    add_completion=False,
)
app.command("serve")(serve)
app.add_typer(config_app, name="config")

# Sub-apps live beside their concept; each module exposes one Typer object.
for _module, _attr, _name in (
    ("wardgate.cli.keys", "keys_app", "keys"),
    ("wardgate.cli.audit", "audit_app", "audit"),
    ("wardgate.cli.model", "model_app", "model"),
    ("wardgate.cli.redteam", "redteam_app", "redteam"),
):
    try:
        app.add_typer(getattr(importlib.import_module(_module), _attr), name=_name)
    except ModuleNotFoundError as _exc:  # TODO(lead): make these static once all land
        if _exc.name != _module:
            raise


if __name__ == "__main__":
    app()
