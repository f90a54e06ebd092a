"""Admin API: key management over HTTP, for an admin key only.

Mirrors ``wardgate keys …``. Raw keys appear exactly once, in the response that creates or
rotates them; listings show only the non-secret prefix.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from wardgate.gateway.responses import JSONBytesResponse
from wardgate.gateway.service import Gateway


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    owner: str = Field(min_length=1, max_length=200)
    models: list[str] = Field(default_factory=lambda: ["*"])
    tier: str = Field(default="standard", min_length=1, max_length=64)
    rpm: int | None = Field(default=None, ge=0)
    tpm: int | None = Field(default=None, ge=0)
    expires_at: datetime | None = None
    admin: bool = False


def admin_router() -> APIRouter:
    router = APIRouter(prefix="/admin")

    async def _gateway(request: Request) -> Gateway:
        gateway: Gateway = request.app.state.gateway
        await gateway.auth.authenticate_admin(request.headers.get("authorization"))
        return gateway

    @router.post("/keys", status_code=201)
    async def create_key(request: Request, body: KeyCreate) -> Response:
        gateway = await _gateway(request)
        record, raw = await asyncio.to_thread(
            gateway.keys.create,
            owner=body.owner,
            models=body.models,
            tier=body.tier,
            rpm=body.rpm,
            tpm=body.tpm,
            expires_at=body.expires_at,
            admin=body.admin,
        )
        return JSONBytesResponse({**record.as_dict(), "key": raw}, status_code=201)

    @router.get("/keys")
    async def list_keys(request: Request, include_revoked: bool = False) -> Response:
        gateway = await _gateway(request)
        records = await asyncio.to_thread(gateway.keys.list, include_revoked=include_revoked)
        return JSONBytesResponse({"object": "list", "data": [k.as_dict() for k in records]})

    @router.post("/keys/{key_id}/revoke")
    async def revoke_key(request: Request, key_id: str) -> Response:
        gateway = await _gateway(request)
        record = await asyncio.to_thread(gateway.keys.revoke, key_id)
        gateway.auth.invalidate()
        return JSONBytesResponse(record.as_dict())

    @router.post("/keys/{key_id}/rotate")
    async def rotate_key(request: Request, key_id: str) -> Response:
        gateway = await _gateway(request)
        record, raw = await asyncio.to_thread(gateway.keys.rotate, key_id)
        gateway.auth.invalidate()
        return JSONBytesResponse({**record.as_dict(), "key": raw})

    @router.get("/audit/verify")
    async def verify_audit(request: Request) -> Response:
        from wardgate.store.audit import verify_chain

        gateway = await _gateway(request)
        await asyncio.to_thread(gateway.audit.flush)
        report = await asyncio.to_thread(verify_chain, gateway.engine)
        return JSONBytesResponse(report.as_dict(), status_code=200 if report.ok else 409)

    return router
