"""Traces (OpenTelemetry, GenAI semantic conventions) and structured logs; off by default.

Only the configuration is imported here (``wardgate.config`` needs it). The OpenTelemetry
packages are imported by :mod:`~wardgate.telemetry.tracing` only when tracing is switched on,
so a gateway without ``telemetry.tracing`` neither imports nor calls them.
"""

from __future__ import annotations

from wardgate.telemetry.config import TelemetryConfig

__all__ = ["TelemetryConfig"]
