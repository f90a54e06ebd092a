"""First start: the database's first admin key, made once in its life and shown once.

Made only if the database never had one (:meth:`KeyStore.bootstrap_admin` records that it
happened), so revoking every admin key and restarting does not mint a new one; an operator
does that explicitly with ``wardgate keys create --admin``.

Where the key goes: to the terminal when stdout is one (a person is watching), otherwise —
under systemd, Docker or CI, where stdout is a log that outlives the moment — into a new
0600 file next to the server secret, whose path (never the key) is logged.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from wardgate.gateway.service import Gateway
from wardgate.store.keys import ApiKey

log = logging.getLogger(__name__)

KEY_FILE_NAME = "admin-key"


def ensure_admin_key(
    gateway: Gateway,
    *,
    echo: Callable[[str], None],
    interactive: bool | None = None,
) -> str | None:
    """Make the first admin key if this database never had one; show it exactly once.

    ``interactive`` (default: whether stdout is a terminal) chooses between printing the key
    with ready-to-run examples and writing it to a 0600 file. Returns the raw key when one
    was made (it is not stored anywhere in clear but that file), else None.
    """
    created = gateway.keys.bootstrap_admin()
    if created is None:
        return None
    record, raw = created
    if interactive is None:
        interactive = sys.stdout.isatty()
    if interactive:
        echo(_welcome(gateway, record, raw))
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


def _welcome(gateway: Gateway, record: ApiKey, raw: str) -> str:
    server = gateway.config.server
    base = f"http://{server.host}:{server.port}/v1"
    model = gateway.config.models[0].name if gateway.config.models else "MODEL"
    return f"""
Created the first admin key ({record.prefix}). It is shown only this once; store it now:

    {raw}

Try it:

    curl {base}/chat/completions \\
      -H "Authorization: Bearer {raw}" -H "Content-Type: application/json" \\
      -d '{{"model": "{model}", "messages": [{{"role": "user", "content": "Hello!"}}]}}'

    python -c 'from openai import OpenAI; c = OpenAI(base_url="{base}", api_key="{raw}"); \\
print(c.chat.completions.create(model="{model}", \\
messages=[{{"role": "user", "content": "Hello!"}}]).choices[0].message.content)'

Create keys for applications with:  wardgate keys create --owner my-app
"""
