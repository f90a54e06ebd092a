"""The ``wardgate`` command: a thin shell over the Python API, one sub-app per concept."""

from __future__ import annotations

from typing import Annotated

import typer

from wardgate.cli.audit import audit_app
from wardgate.cli.config_cmd import config_app
from wardgate.cli.help import WardgateTyper
from wardgate.cli.keys import keys_app
from wardgate.cli.model import model_app
from wardgate.cli.monitor import monitor_app
from wardgate.cli.receipt import receipt_app
from wardgate.cli.redteam import redteam_app
from wardgate.cli.serve import serve
from wardgate.cli.watermark import watermark_app
from wardgate.cli.whitebox import whitebox_app

app = WardgateTyper(
    name="wardgate",
    help="Security gateway and assurance kit for open-weight and vendor LLMs.",
    no_args_is_help=True,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"wardgate {version('wardgate')}")
        raise typer.Exit()


@app.callback()
def main(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Security gateway and assurance kit for open-weight and vendor LLMs."""


app.command("serve")(serve)
app.add_typer(config_app, name="config")
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
app.add_typer(model_app, name="model")
app.add_typer(monitor_app, name="monitor")
app.add_typer(redteam_app, name="redteam")
app.add_typer(receipt_app, name="receipt")
app.add_typer(watermark_app, name="watermark")
app.add_typer(whitebox_app, name="whitebox")


if __name__ == "__main__":
    app()
