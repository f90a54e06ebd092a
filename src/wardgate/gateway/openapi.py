"""``GET /openapi.json``: the contract of every public endpoint and of every error body.

The gateway's routes are plain Starlette routes (authentication runs before any body is
parsed, see ``gateway/audited.py``), so FastAPI cannot derive their schema; it is assembled
here from the same pydantic models that validate the requests (``ChatRequest``,
``EmbeddingRequest``) plus models of the answers, and checked against the running gateway by
schemathesis in the test suite (``tests/gateway/test_openapi_contract.py``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from wardgate.chat import TOLERATED_PARAMETERS, ChatRequest
from wardgate.embeddings import EmbeddingRequest


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorBody(BaseModel):
    """Every error the gateway answers, on every route but ``/v1/messages``."""

    error: ErrorDetail


class AnthropicErrorDetail(_Open):
    type: str
    message: str
    code: str | None = None


class AnthropicError(BaseModel):
    type: Literal["error"]
    error: AnthropicErrorDetail


class Usage(_Open):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class FunctionCall(BaseModel):
    name: str
    arguments: str


class ToolCallOut(BaseModel):
    id: str
    type: Literal["function"]
    function: FunctionCall


class AssistantMessage(BaseModel):
    role: Literal["assistant"]
    content: str | None
    refusal: None = None
    tool_calls: list[ToolCallOut] | None = None


class Choice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: None = None
    finish_reason: Literal["stop", "length", "content_filter", "tool_calls", "error"]
    #: The stop sequence that ended the answer, when one did and the backend says so.
    stop_reason: str | None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    system_fingerprint: None = None
    choices: list[Choice] = Field(min_length=1, max_length=1)
    usage: Usage


class ModelObject(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelObject]


class EmbeddingObject(BaseModel):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(BaseModel):
    object: Literal["list"]
    data: list[EmbeddingObject]
    model: str
    usage: EmbeddingUsage


class AnthropicUsage(_Open):
    input_tokens: int
    output_tokens: int


class AnthropicMessage(_Open):
    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    model: str
    content: list[dict[str, Any]]
    stop_reason: str | None
    usage: AnthropicUsage


class MessagesRequest(_Open):
    """The Anthropic Messages API body (``docs/agents.md`` lists what is translated)."""

    model: str
    max_tokens: int
    messages: list[dict[str, Any]] = Field(min_length=1)
    system: str | list[dict[str, Any]] | None = None
    stream: bool | None = None


class ResponsesRequest(_Open):
    """The Responses API body, stateless subset (``docs/agents.md``)."""

    model: str
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    stream: bool | None = None


class ResponseObject(_Open):
    id: str
    object: Literal["response"]
    created_at: int
    status: str
    model: str | None
    output: list[dict[str, Any]]


class Status(_Open):
    status: str


class WatermarkReport(_Open):
    """The detection report (fields in docs/provenance.md)."""


class JWKS(_Open):
    keys: list[dict[str, Any]]


_ERRORS = {
    "400": "Invalid request, unsupported parameter, or blocked by a guard",
    "401": "Missing, unknown, revoked or expired API key",
    "403": "The key may not use this model, tool or endpoint",
    "404": "Unknown model or path",
    "413": "Request body larger than server.max_body_bytes",
    "429": "Rate limit exceeded (Retry-After says when to try again)",
    "500": "Internal error",
    "502": "The upstream model failed",
    "503": "Overloaded, a guard unavailable, or the upstream down",
    "504": "The upstream model timed out",
}


def _errors(ref: str, codes: tuple[str, ...] = tuple(_ERRORS)) -> dict[str, Any]:
    return {
        code: {
            "description": _ERRORS[code],
            "content": {"application/json": {"schema": {"$ref": ref}}},
        }
        for code in codes
    }


_SSE_EVENT: dict[str, Any] = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "data": {"type": "string"},
        "event": {"type": "string"},
        "id": {"type": "string"},
        "retry": {"type": "integer"},
    },
}


def _json(ref: str, description: str, *, stream: bool = False) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": {"$ref": ref}}}
    if stream:
        # One server-sent event (on OpenAPI 3.1 the schema describes each parsed event):
        # ``data`` holds the JSON chunk (or ``[DONE]``), ``event`` its name where the API
        # names events (Responses, Anthropic Messages).
        content["text/event-stream"] = {"schema": _SSE_EVENT}
    return {"description": description, "content": content}


def _ref(name: str) -> str:
    return f"#/components/schemas/{name}"


def _chat_schema(defs: dict[str, Any]) -> dict[str, Any]:
    schema = ChatRequest.model_json_schema(ref_template=_ref("{model}"))
    defs.update(schema.pop("$defs", {}))
    # Unknown parameters are refused; the tolerated vendor hints are the only extras.
    for name in sorted(TOLERATED_PARAMETERS):
        schema["properties"].setdefault(name, {})
    schema["additionalProperties"] = False
    # ChatRequest also refuses a conversation whose messages are all blank: say so in the
    # contract, so that a client generating bodies from it (and schemathesis) sends valid ones.
    schema["properties"]["messages"]["contains"] = _NON_BLANK_MESSAGE
    return schema


#: A message with some non-whitespace text, as a string or in a text part.
_NON_BLANK_MESSAGE: dict[str, Any] = {
    "type": "object",
    "required": ["content"],
    "properties": {
        "content": {
            "anyOf": [
                {"type": "string", "pattern": r"\S"},
                {
                    "type": "array",
                    "contains": {
                        "type": "object",
                        "required": ["type", "text"],
                        "properties": {
                            "type": {"const": "text"},
                            "text": {"type": "string", "pattern": r"\S"},
                        },
                    },
                },
            ]
        }
    },
}


def openapi_document(version: str) -> dict[str, Any]:
    defs: dict[str, Any] = {}
    models: list[type[BaseModel]] = [
        ErrorBody, AnthropicError, ChatCompletion, ModelList, ModelObject, EmbeddingList,
        AnthropicMessage, MessagesRequest, ResponsesRequest, ResponseObject, Status,
        WatermarkReport, JWKS,
    ]  # fmt: skip
    schemas: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template=_ref("{model}"))
        defs.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    schemas["ChatRequest"] = _chat_schema(defs)
    embedding = EmbeddingRequest.model_json_schema(ref_template=_ref("{model}"))
    defs.update(embedding.pop("$defs", {}))
    schemas["EmbeddingRequest"] = embedding
    from wardgate.gateway.watermark_route import DetectBody

    detect = DetectBody.model_json_schema(ref_template=_ref("{model}"))
    defs.update(detect.pop("$defs", {}))
    schemas["WatermarkDetectRequest"] = detect
    schemas.update(defs)
    error, anthropic_error = _ref("ErrorBody"), _ref("AnthropicError")
    secured: list[dict[str, list[str]]] = [{"bearer": []}]

    def post(
        summary: str, request: str, answer: str, *, errors: str = error, stream: bool = True
    ) -> dict[str, Any]:
        return {
            "post": {
                "summary": summary,
                "security": secured if errors == error else [{"bearer": []}, {"x-api-key": []}],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": _ref(request)}}},
                },
                "responses": {"200": _json(_ref(answer), "The answer", stream=stream)}
                | _errors(errors),
            }
        }

    def get(summary: str, answer: str, *, auth: bool = True, admin: bool = False) -> dict[str, Any]:
        codes = ("401", "403", "404", "429", "500", "503") if auth else ("500", "503")
        operation: dict[str, Any] = {
            "summary": summary,
            "responses": {"200": _json(_ref(answer), "OK")} | _errors(error, codes),
        }
        if auth:
            operation["security"] = secured
        return {"get": operation}

    paths: dict[str, Any] = {
        "/v1/chat/completions": post("Chat completion (OpenAI)", "ChatRequest", "ChatCompletion"),
        "/v1/embeddings": post("Embeddings", "EmbeddingRequest", "EmbeddingList", stream=False),
        "/v1/messages": post(
            "Message (Anthropic Messages API)",
            "MessagesRequest",
            "AnthropicMessage",
            errors=anthropic_error,
        ),
        "/v1/responses": post(
            "Response (OpenAI Responses API)", "ResponsesRequest", "ResponseObject"
        ),
        "/v1/models": get("Models this key may use", "ModelList"),
        "/v1/models/{model_id}": get("One model", "ModelObject")
        | {
            "parameters": [
                {"name": "model_id", "in": "path", "required": True, "schema": {"type": "string"}}
            ]
        },
        "/v1/watermark/detect": post(
            "Detect a watermark (admin key or the watermark:detect scope)",
            "WatermarkDetectRequest",
            "WatermarkReport",
            stream=False,
        ),
        "/.well-known/wardgate/keys": get("Receipt verification keys (JWKS)", "JWKS", auth=False),
        "/healthz": get("Liveness", "Status", auth=False),
        "/readyz": get("Readiness (503 while models load)", "Status", auth=False),
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Wardgate",
            "version": version,
            "description": "OpenAI- and Anthropic-compatible gateway with guards. The admin "
            "API (/admin/...) and /metrics are documented in docs/keys-and-audit.md.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "x-api-key": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            },
        },
    }
