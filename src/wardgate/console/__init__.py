"""The admin console at ``/console``: server-rendered pages over the gateway's own stores.

:mod:`~wardgate.console.config` (imported by ``wardgate.config``), :mod:`~.sessions` (admin
key in, session cookie out), :mod:`~.queries` (read-only SQL for the pages),
:mod:`~.routes` (the pages and forms). See docs/console.md.
"""

from __future__ import annotations

from wardgate.console.config import ConsoleConfig

__all__ = ["ConsoleConfig"]
