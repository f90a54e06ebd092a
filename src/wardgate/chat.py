"""Chat domain types shared by the HTTP surface, backends, guards and the red-team harness.

The request model follows the OpenAI Chat Completions schema closely enough that the official
SDK works unchanged, and strictly enough that bad input becomes a clear 400, not a 500.
Backends receive a validated :class:`ChatRequest` and yield :class:`Completion` or
:class:`Delta` objects; only the gateway turns those back into OpenAI JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from wardgate.errors import UnsupportedParameter

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]
FinishReason = Literal["stop", "length", "content_filter", "tool_calls", "error"]

#: Hard ceiling on ``max_tokens`` regardless of model; anything above is absurd for a gateway.
MAX_TOKENS_CEILING = 1_000_000


class ContentPart(BaseModel):
    """One part of a multi-part message. Only text parts are accepted over HTTP (see
    :func:`reject_unsupported`); other types are kept so internal callers can see them."""

    model_config = ConfigDict(extra="allow")

    type: StrictStr
    text: StrictStr | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Role
    content: StrictStr | list[ContentPart] | None = None
    name: StrictStr | None = None
    tool_call_id: StrictStr | None = None
    tool_calls: list[dict[str, Any]] | None = None

    @property
    def text(self) -> str:
        """The message's text, with multi-part text parts joined; non-text parts are ignored."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text or "" for part in self.content if part.type == "text")


class FunctionDefinition(BaseModel):
    """A function the model may call. ``parameters`` is a JSON Schema object, passed on as is."""

    model_config = ConfigDict(extra="forbid")

    name: StrictStr = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: StrictStr | None = Field(default=None, max_length=8192)
    parameters: dict[str, Any] | None = None
    strict: StrictBool | None = None


class Tool(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: StrictStr = Field(min_length=1, max_length=64)


class NamedToolChoice(BaseModel):
    """``{"type": "function", "function": {"name": ...}}``: this tool, and no other answer."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["function"]
    function: NamedFunction


class JSONSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: StrictStr = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: StrictStr | None = None
    # ``schema`` shadows a BaseModel attribute, hence the alias.
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: StrictBool | None = None


class ResponseFormat(BaseModel):
    """``text``, ``json_object`` (any JSON object) or ``json_schema`` (one that fits)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_matches_type(self) -> ResponseFormat:
        if (self.type == "json_schema") != (self.json_schema is not None):
            raise ValueError("json_schema is required with, and only with, type 'json_schema'")
        return self

    @property
    def answer_schema(self) -> dict[str, Any] | None:
        """The JSON Schema the answer must satisfy: the given one, ``{"type": "object"}`` for
        ``json_object``, None for text."""
        if self.type == "json_object":
            return {"type": "object"}
        if self.json_schema is not None:
            return self.json_schema.schema_ or {"type": "object"}
        return None


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice

#: Most tools one request may declare (OpenAI's own limit).
MAX_TOOLS = 128


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: StrictBool = False


class ChatRequest(BaseModel):
    """A validated ``POST /v1/chat/completions`` body.

    Types are strict: ``"max_tokens": "10"`` or ``"stream": "yes"`` is a 400, not a guess
    (a float field still takes a JSON integer, as JSON Schema does). Parameters outside this
    model are screened by :func:`reject_unsupported` before validation.
    """

    model_config = ConfigDict(extra="allow")

    model: StrictStr = Field(min_length=1, max_length=256)
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: StrictInt | None = Field(default=None, ge=1, le=MAX_TOKENS_CEILING)
    max_completion_tokens: StrictInt | None = Field(default=None, ge=1, le=MAX_TOKENS_CEILING)
    temperature: StrictFloat | None = Field(default=None, ge=0.0, le=2.0)
    top_p: StrictFloat | None = Field(default=None, gt=0.0, le=1.0)
    stop: StrictStr | list[StrictStr] | None = None
    seed: StrictInt | None = None
    user: StrictStr | None = Field(default=None, max_length=256)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    n: StrictInt = Field(default=1, ge=1, le=1)
    tools: list[Tool] | None = Field(default=None, max_length=MAX_TOOLS)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: StrictBool | None = None
    response_format: ResponseFormat | None = None

    @field_validator("stop")
    @classmethod
    def _bounded_stop(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences are allowed")
        return value

    @model_validator(mode="after")
    def _has_content(self) -> ChatRequest:
        if not any(m.text.strip() for m in self.messages):
            raise ValueError("messages must contain at least one non-empty message")
        return self

    @model_validator(mode="after")
    def _tools_consistent(self) -> ChatRequest:
        names = [t.function.name for t in self.tools or ()]
        if len(set(names)) != len(names):
            raise ValueError("tools: function names must be unique")
        if isinstance(self.tool_choice, NamedToolChoice):
            if self.tool_choice.function.name not in names:
                raise ValueError("tool_choice names a function that is not in tools")
        elif self.tool_choice in ("auto", "required") and not names:
            raise ValueError("tool_choice is only allowed when tools are specified")
        return self

    @property
    def tool_names(self) -> list[str]:
        return [t.function.name for t in self.tools or ()]

    @property
    def uses_tools(self) -> bool:
        """Whether the model may answer with tool calls (tools given, choice not ``none``)."""
        return bool(self.tools) and self.tool_choice != "none"

    @property
    def forced_tool(self) -> str | None:
        """The one tool the model must call, when ``tool_choice`` names it."""
        if isinstance(self.tool_choice, NamedToolChoice):
            return self.tool_choice.function.name
        return None

    @property
    def json_schema(self) -> dict[str, Any] | None:
        """The JSON Schema ``response_format`` asks the answer to satisfy, if any."""
        return self.response_format.answer_schema if self.response_format else None

    @property
    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    @property
    def token_limit(self) -> int | None:
        """``max_completion_tokens`` (newer SDKs) wins over ``max_tokens``."""
        return self.max_completion_tokens or self.max_tokens

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


def _absent(value: Any) -> bool:
    return value is None or value == [] or value == {}


#: Chat Completions parameters Wardgate does not implement, with the values that ask for
#: nothing (OpenAI's defaults). Any other value is refused with a 400 naming the parameter:
#: answering without the feature would be a 200 that is not what the client asked for.
#: Implementing a feature means declaring it on :class:`ChatRequest` and deleting its entry.
UNSUPPORTED_PARAMETERS: Mapping[str, Callable[[Any], bool]] = {
    "functions": _absent,
    "function_call": lambda v: v is None or v == "none",
    "logprobs": lambda v: v is None or v is False,
    "top_logprobs": lambda v: v is None,
    "logit_bias": _absent,
    "n": lambda v: v is None or (v == 1 and v is not True),
    "frequency_penalty": lambda v: v is None or (v == 0 and v is not False),
    "presence_penalty": lambda v: v is None or (v == 0 and v is not False),
    "audio": lambda v: v is None,
    "modalities": lambda v: v is None or v == ["text"],
    "prediction": lambda v: v is None,
    "reasoning_effort": lambda v: v is None,
    "verbosity": lambda v: v is None,
    "web_search_options": lambda v: v is None,
    "store": lambda v: v is None or v is False,
}

#: Parameters OpenAI accepts that Wardgate accepts too and does not act on: ``metadata``
#: (read for the routing label, see ``routing.policy.request_label``), and hints about the
#: vendor's own service (``service_tier``, ``prompt_cache_key``, ``safety_identifier``).
#: Every other unknown top-level parameter is refused, as OpenAI refuses it. Listed in
#: docs/gateway.md.
TOLERATED_PARAMETERS = frozenset(
    {"metadata", "service_tier", "prompt_cache_key", "safety_identifier"}
)

#: Message content part types a text model can take.
SUPPORTED_PART_TYPES = frozenset({"text"})


def reject_unsupported(body: Mapping[str, Any]) -> None:
    """Raise :class:`UnsupportedParameter` for the first feature this body asks for that
    Wardgate does not implement, or for a parameter OpenAI does not know either."""
    if not body.keys() <= _PLAIN:
        _reject_parameters(body)
    messages = body.get("messages")
    if not isinstance(messages, list):
        return
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        for j, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if isinstance(kind, str) and kind not in SUPPORTED_PART_TYPES:
                raise UnsupportedParameter(
                    f"content parts of type {kind[:32]!r} are not supported; only text",
                    param=f"messages.{i}.content.{j}.type",
                )


def _reject_parameters(body: Mapping[str, Any]) -> None:
    for name, value in body.items():
        harmless = UNSUPPORTED_PARAMETERS.get(name)
        if harmless is not None:
            if not harmless(value):
                raise UnsupportedParameter(
                    f"{name!r} is not supported by this gateway; send the request without it",
                    param=name,
                )
        elif name not in _DECLARED and name not in TOLERATED_PARAMETERS:
            raise UnsupportedParameter(
                f"Unrecognized request argument supplied: {name[:64]}",
                param=name[:64],
                code="unrecognized_parameter",
            )


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(slots=True)
class ToolCall:
    """A function call in an answer. ``arguments`` is JSON text, as the model wrote it."""

    id: str
    name: str
    arguments: str = "{}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(slots=True)
class ToolCallDelta:
    """A fragment of a streamed tool call, keyed by ``index`` as OpenAI streams them: the
    first fragment of a call carries ``id`` and ``name``, later ones more ``arguments``."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(slots=True)
class Completion:
    """A whole answer from a backend."""

    text: str
    finish_reason: FinishReason = "stop"
    usage: Usage = field(default_factory=Usage)
    tool_calls: list[ToolCall] = field(default_factory=list)
    #: The stop sequence that ended the answer, when the backend knows (``finish_reason``
    #: is then ``stop``); None for a natural end or when the upstream does not say.
    stop_sequence: str | None = None


@dataclass(slots=True)
class Delta:
    """One streamed piece. The last delta carries ``finish_reason`` and, when known, ``usage``."""

    text: str = ""
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    tool_calls: list[ToolCallDelta] = field(default_factory=list)
    #: On the last delta: the stop sequence that ended the answer (see :class:`Completion`).
    stop_sequence: str | None = None


def assemble_tool_calls(fragments: list[ToolCallDelta]) -> list[ToolCall]:
    """Join streamed fragments into whole calls, ordered by index (the client's view)."""
    calls: dict[int, ToolCall] = {}
    for fragment in fragments:
        call = calls.get(fragment.index)
        if call is None:
            call = calls[fragment.index] = ToolCall(id="", name="", arguments="")
        if fragment.id:
            call.id = fragment.id
        if fragment.name:
            call.name += fragment.name
        call.arguments += fragment.arguments
    return [calls[i] for i in sorted(calls)]


_DECLARED = frozenset(ChatRequest.model_fields)
#: Keys that need no per-value screening: a body with only these skips the table.
_PLAIN = (_DECLARED | TOLERATED_PARAMETERS) - UNSUPPORTED_PARAMETERS.keys()
