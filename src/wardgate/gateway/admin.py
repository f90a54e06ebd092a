"""Admin API: key management over HTTP, for an admin key only.

Mirrors ``wardgate keys …``. Raw keys appear exactly once, in the response that creates or
rotates them; listings show only the non-secret prefix.

Every route is an :func:`~wardgate.gateway.audited.audited_route`: the admin key is checked
before a byte of the body is read, bodies are read under ``server.max_body_bytes``, and each
request leaves one audit record (``kind: admin``). Every field of a new key is bounded here,
in the schema, by the same limits the store applies to the CLI (``store/keys.py``).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from wardgate.errors import InvalidRequest
from wardgate.gateway.audited import audited_route
from wardgate.gateway.body import read_json_body
from wardgate.gateway.responses import JSONBytesResponse
from wardgate.gateway.service import Gateway
from wardgate.store.keys import (
    MAX_MODEL_NAME_CHARS,
    MAX_MODELS_PER_KEY,
    MAX_OWNER_CHARS,
    MAX_RATE_LIMIT,
    MAX_TIER_CHARS,
    ApiKey,
    KeyNotFound,
    utc_expiry,
)

#: Key ids are ``key_`` + 16 hex digits; anything much longer cannot name a key.
_MAX_KEY_ID_CHARS = 64


def _no_controls(value: str) -> str:
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in value):
        raise ValueError("must not contain control characters")
    return value


def _representable(value: datetime | None) -> datetime | None:
    try:
        return utc_expiry(value)
    except InvalidRequest as exc:
        raise ValueError(exc.message) from exc


Name = Annotated[StrictStr, AfterValidator(_no_controls)]
RateLimit = Annotated[StrictInt, Field(ge=0, le=MAX_RATE_LIMIT)]


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    owner: Annotated[Name, Field(min_length=1, max_length=MAX_OWNER_CHARS)]
    models: list[Annotated[Name, Field(min_length=1, max_length=MAX_MODEL_NAME_CHARS)]] = Field(
        default_factory=lambda: ["*"], min_length=1, max_length=MAX_MODELS_PER_KEY
    )
    tier: Annotated[Name, Field(min_length=1, max_length=MAX_TIER_CHARS)] = "standard"
    rpm: RateLimit | None = None
    tpm: RateLimit | None = None
    expires_at: Annotated[datetime | None, AfterValidator(_representable)] = None
    admin: StrictBool = False
    scopes: list[Literal["watermark:detect"]] = Field(default_factory=list, max_length=8)


def _parse(model: type[KeyCreate], body: Any) -> KeyCreate:
    """Validate a body; the error names the field and never echoes the submitted value."""
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object", code="invalid_json")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False, include_context=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise InvalidRequest(
            f"invalid request: {where}: {first['msg']}", param=where, code="invalid_request_body"
        ) from exc


def _key_id(request: Request) -> str:
    key_id: str = request.path_params["key_id"]
    if len(key_id) > _MAX_KEY_ID_CHARS:
        raise KeyNotFound("no API key with that id")
    return key_id


def _flag(request: Request, name: str) -> bool:
    value = request.query_params.get(name, "false").lower()
    if value not in ("true", "false", "1", "0"):
        raise InvalidRequest(f"{name} must be true or false", param=name)
    return value in ("true", "1")


async def create_key(request: Request, gateway: Gateway, _admin: ApiKey) -> Response:
    body = _parse(KeyCreate, await read_json_body(request, gateway.config.server.max_body_bytes))
    record, raw = await asyncio.to_thread(
        gateway.keys.create,
        owner=body.owner,
        models=body.models,
        tier=body.tier,
        rpm=body.rpm,
        tpm=body.tpm,
        expires_at=body.expires_at,
        admin=body.admin,
        scopes=body.scopes,
    )
    return JSONBytesResponse({**record.as_dict(), "key": raw}, status_code=201)


async def list_keys(request: Request, gateway: Gateway, _admin: ApiKey) -> Response:
    include_revoked = _flag(request, "include_revoked")
    records = await asyncio.to_thread(gateway.keys.list, include_revoked=include_revoked)
    return JSONBytesResponse({"object": "list", "data": [k.as_dict() for k in records]})


async def revoke_key(request: Request, gateway: Gateway, _admin: ApiKey) -> Response:
    record = await asyncio.to_thread(gateway.keys.revoke, _key_id(request))
    await gateway.key_changed(record.id)
    return JSONBytesResponse(record.as_dict())


async def rotate_key(request: Request, gateway: Gateway, _admin: ApiKey) -> Response:
    old_id = _key_id(request)
    record, raw = await asyncio.to_thread(gateway.keys.rotate, old_id)
    await gateway.key_changed(old_id)
    return JSONBytesResponse({**record.as_dict(), "key": raw})


async def verify_audit(request: Request, gateway: Gateway, _admin: ApiKey) -> Response:
    from wardgate.store.audit import verify_chain

    await asyncio.to_thread(gateway.audit.flush)
    report = await asyncio.to_thread(verify_chain, gateway.engine)
    return JSONBytesResponse(report.as_dict(), status_code=200 if report.ok else 409)


def admin_routes() -> list[Route]:
    """The admin API under ``/admin``."""
    return [
        audited_route("/admin/keys", create_key, methods=["POST"], action="create_key", admin=True),
        audited_route("/admin/keys", list_keys, methods=["GET"], action="list_keys", admin=True),
        audited_route(
            "/admin/keys/{key_id}/revoke",
            revoke_key,
            methods=["POST"],
            action="revoke_key",
            admin=True,
        ),
        audited_route(
            "/admin/keys/{key_id}/rotate",
            rotate_key,
            methods=["POST"],
            action="rotate_key",
            admin=True,
        ),
        audited_route(
            "/admin/audit/verify",
            verify_audit,
            methods=["GET"],
            action="verify_audit",
            admin=True,
        ),
    ]
