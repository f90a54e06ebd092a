"""The ``wardgate`` command: a thin shell over the Python API, one sub-app per concept."""

from __future__ import annotations

import typer

from wardgate.cli.audit import audit_app
from wardgate.cli.keys import keys_app
from wardgate.cli.model import model_app
from wardgate.cli.redteam import redteam_app
from wardgate.cli.serve import config_app, serve

app = typer.Typer(
    name="wardgate",
    help="Security gateway and assurance kit for open-weight and vendor LLMs.",
    no_args_is_help=True,
    add_completion=False,
)
app.command("serve")(serve)
app.add_typer(config_app, name="config")
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
app.add_typer(model_app, name="model")
app.add_typer(redteam_app, name="redteam")


if __name__ == "__main__":
    app()
