"""Routing policy configuration (hybrid routing: where a request may go)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class RoutingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: Logical model names a client may ask for (e.g. ``auto``) and the candidates, in order.
    logical_models: dict[str, list[str]] = Field(default_factory=dict)
