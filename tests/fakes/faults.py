"""Failure modes the fake vendor servers can act out, chosen per request.

A fault is written as a short spec so it can travel anywhere a test can put a string:

* ``ok`` — answer normally;
* ``status=429,retry_after=2`` — an error response in the vendor's exact body shape;
* ``delay=1.5`` — wait before sending headers (a slow upstream);
* ``drop=headers`` — close the TCP connection before any response byte;
* ``drop=mid,after=3`` — stream ``after`` chunks, then close the connection mid-body;
* ``drop=clean,after=3`` — stream ``after`` chunks, then end the body *properly* but without
  the protocol's end marker (no ``[DONE]`` / ``message_stop``): a truncation that only the
  client's protocol check can catch;
* ``chunk_delay=0.2`` — a slow stream (pause before every chunk);
* ``stream_error=overloaded_error,after=2`` — after ``after`` chunks, report an error inside
  the stream (Anthropic ``event: error``; OpenAI-compatible ``data: {"error": ...}``);
* ``finish=<reason>`` — report this vendor-native finish/stop reason instead of the real one
  (e.g. ``finish=content_filter`` for OpenAI, ``finish=refusal`` or ``finish=tool_use`` for
  Anthropic);
* ``echo_key=1`` — with ``status``: the error message quotes the caller's credential, as a
  careless upstream might (tests check the gateway never passes it on).

Per request, the first of these that is present wins: the ``x-fake-fault`` request header,
the next fault queued with :meth:`FaultScript.push` (or ``POST /_fake/faults``), a model
name of the form ``fault:<spec>``, else ``ok``.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

FAULT_HEADER = "x-fake-fault"
MODEL_PREFIX = "fault:"


@dataclass(frozen=True, slots=True)
class Fault:
    status: int | None = None
    retry_after: str | None = None
    delay_s: float = 0.0
    drop: Literal["headers", "mid", "clean"] | None = None
    after: int = 2
    chunk_delay_s: float = 0.0
    stream_error: str | None = None
    echo_key: bool = False
    finish: str | None = None

    @classmethod
    def parse(cls, spec: str) -> Fault:
        spec = spec.strip()
        if spec in ("", "ok"):
            return cls()
        fields: dict[str, object] = {}
        for item in spec.split(","):
            key, sep, value = item.partition("=")
            key, value = key.strip(), value.strip()
            if not sep:
                raise ValueError(f"fault item {item!r} is not key=value")
            if key == "status":
                fields["status"] = int(value)
            elif key == "retry_after":
                fields["retry_after"] = value
            elif key == "delay":
                fields["delay_s"] = float(value)
            elif key == "drop":
                if value not in ("headers", "mid", "clean"):
                    raise ValueError("drop must be 'headers', 'mid' or 'clean'")
                fields["drop"] = value
            elif key == "after":
                fields["after"] = int(value)
            elif key == "chunk_delay":
                fields["chunk_delay_s"] = float(value)
            elif key == "stream_error":
                fields["stream_error"] = value
            elif key == "finish":
                fields["finish"] = value
            elif key == "echo_key":
                fields["echo_key"] = value not in ("0", "false", "")
            else:
                raise ValueError(f"unknown fault key {key!r}")
        return cls(**fields)  # type: ignore[arg-type]


class FaultScript:
    """Per-request fault selection; the queue is shared by the server thread and the test."""

    def __init__(self) -> None:
        self._queue: deque[Fault] = deque()
        self._lock = threading.Lock()

    def push(self, *specs: str | Fault) -> None:
        """Queue faults for the next requests, in order (one fault per request)."""
        faults = [s if isinstance(s, Fault) else Fault.parse(s) for s in specs]
        with self._lock:
            self._queue.extend(faults)

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()

    def choose(self, headers: Mapping[str, str], model: object) -> Fault:
        header = headers.get(FAULT_HEADER)
        if header is not None:
            return Fault.parse(header)
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        if isinstance(model, str) and model.startswith(MODEL_PREFIX):
            return Fault.parse(model[len(MODEL_PREFIX) :])
        return Fault()
