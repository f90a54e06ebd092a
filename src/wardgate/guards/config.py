"""Guard configuration: which guards run, in what order, and how each fails."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class GuardSpec(BaseModel):
    """One guard in a pipeline. ``type`` names a registered guard (entry point ``wardgate.guards``)."""

    model_config = ConfigDict(extra="forbid")

    type: str
    name: str | None = None
    #: Fail closed by default: a guard that errors or times out blocks the request.
    on_error: Literal["block", "allow"] = "block"
    timeout_s: float = Field(default=2.0, gt=0)
    options: dict[str, Any] = Field(default_factory=dict)


class GuardsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: list[GuardSpec] = Field(default_factory=list)
    output: list[GuardSpec] = Field(default_factory=list)
