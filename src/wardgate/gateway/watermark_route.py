"""``POST /v1/watermark/detect``: is this text from one of our watermarked models?

For admin keys and keys with the ``watermark:detect`` scope. Detection tokenizes with the
model's GGUF vocabulary and scores with its key, off the event loop.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from wardgate.errors import InvalidRequest, PermissionDenied
from wardgate.gateway.body import read_json_body
from wardgate.gateway.responses import JSONBytesResponse
from wardgate.gateway.service import Gateway
from wardgate.store.keys import ApiKey

SCOPE = "watermark:detect"


class DetectBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: StrictStr
    model: Annotated[StrictStr, Field(min_length=1, max_length=256)] | None = None
    key_id: Annotated[StrictStr, Field(min_length=1, max_length=64)] | None = None
    threshold: Annotated[float, Field(gt=0, le=100)] | None = None
    windows: Literal["auto", "always", "never"] = "auto"


async def detect_watermark(request: Request, gateway: Gateway, key: ApiKey) -> Response:
    if not key.has_scope(SCOPE):
        raise PermissionDenied(
            f"watermark detection needs an admin key or the {SCOPE!r} scope",
            code="scope_required",
        )
    raw = await read_json_body(request, gateway.config.server.max_body_bytes)
    if not isinstance(raw, dict):
        raise InvalidRequest("request body must be a JSON object", code="invalid_json")
    try:
        body = DetectBody.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False, include_context=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise InvalidRequest(
            f"invalid request: {where}: {first['msg']}", param=where, code="invalid_request_body"
        ) from exc
    report = await asyncio.to_thread(
        gateway.detector.detect,
        body.text,
        model=body.model,
        key_id=body.key_id,
        threshold=body.threshold,
        windows=body.windows,
    )
    return JSONBytesResponse(report)
