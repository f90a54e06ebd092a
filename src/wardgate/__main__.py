"""``python -m wardgate``: the same command line as the ``wardgate`` script."""

from wardgate.cli.main import app

app(prog_name="wardgate")
