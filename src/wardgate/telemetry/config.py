"""``telemetry:`` in the gateway config."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TelemetryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: Emit a trace per request (spans: auth, guards, routing, each upstream attempt, audit).
    tracing: bool = False
    #: OTLP/HTTP traces endpoint, e.g. ``http://otel-collector:4318/v1/traces``; unset: the
    #: exporter's own default (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or localhost:4318).
    otlp_endpoint: str | None = Field(default=None, pattern=r"^https?://")
    service_name: str = Field(default="wardgate", min_length=1, max_length=128)
    #: Fraction of requests traced (parent-based: a sampled caller's trace is always kept).
    sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)
    #: ``json``: one JSON object per log line (ts, level, logger, message, and extras).
    log_format: Literal["text", "json"] = "text"
