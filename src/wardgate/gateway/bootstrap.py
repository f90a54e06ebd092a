"""First start: make sure an admin key exists, and show it exactly once."""

from __future__ import annotations

import importlib.util
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from wardgate.gateway.service import Gateway


def ensure_admin_key(
    gateway: Gateway,
    *,
    echo: Callable[[str], None],
    config_path: str | os.PathLike[str] | None = None,
) -> str | None:
    """Create an admin key if there is no active one; print it with ready-to-run examples.

    Returns the raw key when one was created (it is not stored anywhere in clear), else None.
    ``config_path`` is the file the gateway was started with; the printed ``keys create``
    command names it, so it reaches the same database.
    """
    if any(k.admin and k.is_active() for k in gateway.keys.list(include_revoked=False)):
        return None
    record, raw = gateway.keys.create(owner="admin", models=["*"], tier="admin", admin=True)
    server = gateway.config.server
    model = gateway.config.models[0].name if gateway.config.models else "MODEL"
    echo(
        first_start_banner(
            key=raw,
            prefix=record.prefix,
            base_url=f"http://{client_host(server.host)}:{server.port}/v1",
            model=model,
            config_path=config_path,
        )
    )
    return raw


def client_host(host: str) -> str:
    """The address a client on this machine uses for a server bound to ``host``."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104


def command_forms() -> tuple[str, str]:
    """How to run this installation's Python and ``wardgate`` exactly as typed in a shell.

    ``make run`` never activates the virtualenv, so neither ``python`` nor ``wardgate`` on the
    PATH is this installation's: print the interpreter that runs now (relative to the current
    folder when inside it, e.g. ``.venv/bin/python``) and the ``wardgate`` script beside it.
    The banner says which folder the commands are for (the config's relative paths, such as
    ``sqlite:///wardgate.db``, are relative to it too).
    """
    python = Path(sys.executable)
    script = python.with_name("wardgate")

    def shown(path: Path) -> str:
        try:
            return str(path.relative_to(Path.cwd()))
        except ValueError:
            return str(path)

    python_form = shlex.quote(shown(python))
    if script.is_file():
        return python_form, shlex.quote(shown(script))
    return python_form, f"{python_form} -m wardgate"


def first_start_banner(
    *,
    key: str,
    prefix: str,
    base_url: str,
    model: str,
    config_path: str | os.PathLike[str] | None = None,
) -> str:
    """The text shown once on first start: the key, and commands that work as printed."""
    python, wardgate = command_forms()
    sdk_note = ""
    if importlib.util.find_spec("openai") is None:
        pip = shlex.quote(str(Path(sys.executable).with_name("pip")))
        sdk_note = f"\n    # needs the OpenAI SDK first:  {pip} install openai"
    config_flag = f" --config {shlex.quote(str(config_path))}" if config_path else ""
    return f"""
Created the first admin key ({prefix}). It is shown only this once; store it now:

    {key}

Try it from another terminal, in {shlex.quote(os.getcwd())}:

    curl {base_url}/chat/completions \\
      -H "Authorization: Bearer {key}" -H "Content-Type: application/json" \\
      -d '{{"model": "{model}", "messages": [{{"role": "user", "content": "Hello!"}}]}}'
{sdk_note}
    {python} -c 'from openai import OpenAI; c = OpenAI(base_url="{base_url}", api_key="{key}"); \\
print(c.chat.completions.create(model="{model}", \\
messages=[{{"role": "user", "content": "Hello!"}}]).choices[0].message.content)'

Create keys for applications with:

    {wardgate} keys create --owner my-app{config_flag}
"""
