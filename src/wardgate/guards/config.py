"""Guard configuration: which guards run, in what order, and how each fails.

``input``/``output`` are the default pipelines; ``routes`` overrides them per route (a route is
the requested model name or logical model name, e.g. ``auto``), so a strict pipeline can sit in
front of vendor traffic and a lighter one in front of a local model.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from wardgate.validation import field_error


class GuardSpec(BaseModel):
    """One guard in a pipeline; ``type`` names a registered guard (see ``guards.registry``)."""

    model_config = ConfigDict(extra="forbid")

    type: str
    name: str | None = None
    #: Fail closed by default: a guard that errors or times out blocks the request.
    on_error: Literal["block", "allow"] = "block"
    timeout_s: float = Field(default=2.0, gt=0)
    options: dict[str, Any] = Field(default_factory=dict)
    #: Message roles this guard scans on input (None: every role). The answer is always scanned.
    roles: list[str] | None = None
    #: Whether this guard scans the documents the application passes in (RAG context).
    documents: bool = True
    #: Turn the guard off without deleting its block (handy per route).
    enabled: bool = True

    @property
    def label(self) -> str:
        return self.name or self.type


class RouteGuards(BaseModel):
    """Per-route pipelines; a missing list means "use the default list".

    ``options`` overrides some options of the route's guards, by guard name, on top of the
    list in force: ``{harmful: {relax: [S2, S14]}}`` lets an IT-helpdesk route answer
    cyber/admin questions that the default list blocks, without restating the pipeline.
    """

    model_config = ConfigDict(extra="forbid")

    input: list[GuardSpec] | None = None
    output: list[GuardSpec] | None = None
    options: dict[str, dict[str, Any]] = Field(default_factory=dict)


class StreamingConfig(BaseModel):
    """How the output scanner trades latency against what it can see at once."""

    model_config = ConfigDict(extra="forbid")

    #: Characters held back from the client. Unset (the default): the largest hold the
    #: route's output guards declare (``Guard.hold_chars``), so each guard sees its patterns
    #: whole before any of them is released. Set it to trade that for latency explicitly.
    hold_chars: int | None = Field(default=None, ge=1, le=65_536)
    #: Scan after this many new characters (batches scans of tiny token chunks).
    step_chars: int = Field(default=32, ge=1, le=65_536)


class GuardsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: list[GuardSpec] = Field(default_factory=list)
    output: list[GuardSpec] = Field(default_factory=list)
    routes: dict[str, RouteGuards] = Field(default_factory=dict)
    #: Replace PII and secrets by placeholders before a request goes to a ``vendor`` model and
    #: restore them in the answer.
    pseudonymise: bool = False
    streaming: StreamingConfig = Field(default_factory=StreamingConfig)
    #: Threads for CPU-heavy guards (classifiers); bounded so guards cannot starve the server.
    executor_workers: int = Field(default=2, ge=1, le=64)

    @model_validator(mode="after")
    def _unique_labels(self) -> GuardsConfig:
        lists = [("input", self.input), ("output", self.output)]
        for route, spec in self.routes.items():
            lists += [(f"routes.{route}.input", spec.input or [])]
            lists += [(f"routes.{route}.output", spec.output or [])]
        for where, specs in lists:
            labels = [s.label for s in specs]
            dupes = sorted({x for x in labels if labels.count(x) > 1})
            if dupes:
                raise field_error(where, f"duplicate guard names {dupes}; set 'name:'")
        for route, spec in self.routes.items():
            known = {s.label for s in self.input_for(route) + self.output_for(route)}
            unknown = sorted(set(spec.options) - known)
            if unknown:
                raise field_error(
                    f"routes.{route}.options", f"no guard named {unknown} on this route"
                )
        return self

    def input_for(self, route: str | None) -> list[GuardSpec]:
        override = self.routes.get(route or "")
        specs = override.input if override and override.input is not None else self.input
        return _with_options([s for s in specs if s.enabled], override)

    def output_for(self, route: str | None) -> list[GuardSpec]:
        override = self.routes.get(route or "")
        specs = override.output if override and override.output is not None else self.output
        return _with_options([s for s in specs if s.enabled], override)


def _with_options(specs: list[GuardSpec], override: RouteGuards | None) -> list[GuardSpec]:
    """The specs with the route's option overrides merged in (one level deep)."""
    if override is None or not override.options:
        return specs
    return [
        s.model_copy(update={"options": {**s.options, **override.options[s.label]}})
        if s.label in override.options
        else s
        for s in specs
    ]
