"""Embedding domain types: the validated ``POST /v1/embeddings`` body and a backend's answer.

Like the chat model, the request is strict where OpenAI's is: ``input`` is a string or a
list of strings (token-id arrays are refused with a 400: guards cannot read them, and a
gateway that cannot read what it forwards cannot guard it), ``encoding_format`` is
``float`` or ``base64``, ``dimensions`` is passed on to models that can shorten their
vectors and refused by those that cannot.

A backend that makes embeddings has ``async def embed(self, request) -> Embeddings``
(optional, not part of the chat :class:`~wardgate.backends.base.Backend` protocol).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from wardgate.errors import InvalidRequest, UnsupportedParameter

#: OpenAI's own limit on inputs per request.
MAX_INPUTS = 2048


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: StrictStr = Field(min_length=1, max_length=256)
    input: StrictStr | list[StrictStr] = Field(min_length=1)
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: StrictInt | None = Field(default=None, ge=1, le=65536)
    user: StrictStr | None = Field(default=None, max_length=256)

    @property
    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


def parse_embedding_request(body: Any) -> EmbeddingRequest:
    """Validate a body; errors name the field and never echo the submitted value."""
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object", code="invalid_json")
    raw = body.get("input")
    if isinstance(raw, list) and raw and not all(isinstance(item, str) for item in raw):
        raise UnsupportedParameter(
            "token-id arrays are not supported as input; send the text", param="input"
        )
    if isinstance(raw, list) and len(raw) > MAX_INPUTS:
        raise InvalidRequest(f"at most {MAX_INPUTS} inputs per request", param="input")
    try:
        request = EmbeddingRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        if first["type"] == "extra_forbidden":
            raise UnsupportedParameter(
                f"Unrecognized request argument supplied: {where[:64]}",
                param=where[:64],
                code="unrecognized_parameter",
            ) from exc
        raise InvalidRequest(
            f"invalid request: {where}: {first['msg']}", param=where, code="invalid_request_body"
        ) from exc
    if not all(text.strip() for text in request.texts):
        raise InvalidRequest("input must not contain empty strings", param="input")
    return request


@dataclass(slots=True)
class Embeddings:
    """One vector per input, in input order, and the tokens the model read."""

    vectors: list[list[float]]
    prompt_tokens: int = 0
    model: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def encode_vector(vector: list[float], encoding_format: str) -> list[float] | str:
    """A vector as OpenAI sends it: floats, or little-endian float32 bytes in base64."""
    if encoding_format == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return vector


def embeddings_body(request: EmbeddingRequest, result: Embeddings) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {
                "object": "embedding",
                "index": i,
                "embedding": encode_vector(v, request.encoding_format),
            }
            for i, v in enumerate(result.vectors)
        ],
        "model": request.model,
        "usage": {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens},
    }
