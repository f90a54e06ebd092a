"""First start: make sure an admin key exists, and show it exactly once."""

from __future__ import annotations

from collections.abc import Callable

from wardgate.gateway.service import Gateway


def ensure_admin_key(gateway: Gateway, *, echo: Callable[[str], None]) -> str | None:
    """Create an admin key if there is no active one; print it with ready-to-run examples.

    Returns the raw key when one was created (it is not stored anywhere in clear), else None.
    """
    if any(k.admin and k.is_active() for k in gateway.keys.list(include_revoked=False)):
        return None
    record, raw = gateway.keys.create(owner="admin", models=["*"], tier="admin", admin=True)
    server = gateway.config.server
    base = f"http://{server.host}:{server.port}/v1"
    model = gateway.config.models[0].name if gateway.config.models else "MODEL"
    echo(
        f"""
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
    )
    return raw
