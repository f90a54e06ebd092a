"""Console settings (``console:`` in the gateway config)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ConsoleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: Serve ``/console``. Only admin keys can log in.
    enabled: bool = True
    #: A session ends after this long without a request...
    idle_timeout_s: float = Field(default=1800.0, gt=0)
    #: ...and after this long in any case.
    max_age_s: float = Field(default=8 * 3600.0, gt=0)
    #: Sessions held at once in this process (the oldest is ended first); with
    #: ``redis_url`` set, sessions live in Redis instead and end by their expiry.
    max_sessions: int = Field(default=1000, ge=1)
    #: Prefix of the console's Redis keys (sessions), when ``redis_url`` is set.
    redis_prefix: str = Field(default="wardgate:console:", min_length=1, max_length=128)
    #: Folder of red-team reports (``wardgate redteam run --html``) listed by the console.
    reports_dir: str = ".wardgate/reports"
    #: Largest form body accepted (after the session is checked).
    max_form_bytes: int = Field(default=16_384, ge=1024, le=1_048_576)
