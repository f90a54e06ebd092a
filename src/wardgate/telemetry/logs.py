"""Structured logs: one JSON object per line (``telemetry.log_format: json``).

The gateway never logs prompts, answers or raw keys (``server.log_content`` aside), and this
formatter adds nothing but the record's own fields, so that stays true in JSON.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import orjson

#: LogRecord attributes that are plumbing, not content.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD and not name.startswith("_"):
                out[name] = value if isinstance(value, (str, int, float, bool)) else str(value)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out).decode()


def use_json_logs(level: str) -> None:
    """Replace the root handlers' formatting with :class:`JsonFormatter`."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    for handler in root.handlers:
        handler.setFormatter(JsonFormatter())
    root.setLevel(level)
