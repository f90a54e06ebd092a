"""Which tools a request's answers may call: the ``tools:`` policy of the config.

An agent's tool calls are actions, not text, so the gateway lets the operator say which
tools a key's requests may receive calls for::

    tools:
      allow: [search, get_weather, send_email]   # every key, every model (omit: any tool)
      models: {support-bot: [search]}            # per requested model or logical model
      keys: {wg_key_id_or_owner: [get_weather]}  # per API key (its id or its owner)

The lists that apply to a request intersect: a key listed for ``[get_weather]`` may not get
``search`` calls even on a model that allows it. A request that declares an unlisted tool
is refused up front (403 ``tool_not_allowed``, nothing reaches a model); an answer that
calls one anyway (a model may call a tool it was never given) is blocked with the same code.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from wardgate.errors import PermissionDenied

TOOL_NOT_ALLOWED = "tool_not_allowed"


class ToolNotAllowed(PermissionDenied):
    code = TOOL_NOT_ALLOWED


class ToolPolicyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: Tools any request may receive calls for; ``None`` (the default) allows every tool.
    allow: list[str] | None = None
    #: Per requested model name (a model or a logical model).
    models: dict[str, list[str]] = Field(default_factory=dict)
    #: Per API key, by key id or by owner.
    keys: dict[str, list[str]] = Field(default_factory=dict)

    def allowed(
        self, *, model: str, key_id: str | None, owner: str | None
    ) -> frozenset[str] | None:
        """The tool names allowed for this request, or None when every tool is."""
        lists = [self.allow, self.models.get(model)]
        lists += [self.keys.get(key_id or ""), self.keys.get(owner or "")]
        result: frozenset[str] | None = None
        for names in lists:
            if names is None:
                continue
            result = frozenset(names) if result is None else result & frozenset(names)
        return result


def check_declared(allowed: frozenset[str] | None, names: list[str]) -> None:
    """Refuse a request that offers the model a tool it may not call."""
    if allowed is None:
        return
    for name in names:
        if name not in allowed:
            raise ToolNotAllowed(f"this API key may not use the tool {name[:64]!r}", param="tools")


def check_called(allowed: frozenset[str] | None, names: list[str]) -> None:
    """Block an answer that calls a tool the request may not receive calls for."""
    if allowed is None:
        return
    for name in names:
        if name not in allowed:
            raise ToolNotAllowed(
                f"the model called the tool {name[:64]!r}, which this API key may not use"
            )
