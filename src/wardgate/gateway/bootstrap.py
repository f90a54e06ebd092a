"""First start: the database's first admin key, made once in its life and shown once.

Made only if the database never had one (:meth:`KeyStore.bootstrap_admin` records that it
happened), so revoking every admin key and restarting does not mint a new one; an operator
does that explicitly with ``wardgate keys create --admin``.

Where the key goes: to the terminal when stdout is one (a person is watching), otherwise —
under systemd, Docker or CI, where stdout is a log that outlives the moment — into a new
0600 file next to the server secret, whose path (never the key) is logged.
"""


from __future__ import annotations

import importlib.util
import logging
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from wardgate.gateway.service import Gateway

log = logging.getLogger(__name__)

KEY_FILE_NAME = "admin-key"


def ensure_admin_key(
    gateway: Gateway,
    *,
    echo: Callable[[str], None],
    config_path: str | os.PathLike[str] | None = None,
    interactive: bool | None = None,
) -> str | None:
    """Make the first admin key if this database never had one; show it exactly once.

    ``interactive`` (default: whether stdout is a terminal) chooses between printing the key
    with ready-to-run examples and writing it to a 0600 file. ``config_path`` is the file the
    gateway was started with; the printed ``keys create`` command names it, so it reaches the
    same database. Returns the raw key when one was made (it is not stored anywhere in clear
    but that file), else None.
    """
    created = gateway.keys.bootstrap_admin()
    if created is None:
        return None
    record, raw = created
    if interactive is None:
        interactive = sys.stdout.isatty()
    if interactive:
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
    else:
        path = write_key_file(_key_dir(gateway), raw)
        log.warning(
            "created the first admin key %s; stdout is not a terminal, so it was written to "
            "%s (mode 0600): read it, store it safely, then delete the file",
            record.display,
            path,
        )
    return raw


def write_key_file(folder: Path, raw: str) -> Path:
    """A new file readable by this user only, holding ``raw``; never overwrites one."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    for n in range(1000):
        path = folder / (KEY_FILE_NAME if n == 0 else f"{KEY_FILE_NAME}.{n}")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(raw + "\n")
        return path.resolve()
    raise FileExistsError(f"{folder} holds 1000 {KEY_FILE_NAME} files; remove them")


def _key_dir(gateway: Gateway) -> Path:
    return Path(gateway.config.auth.secret_file).expanduser().parent


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
