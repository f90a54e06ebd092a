"""What both fake vendors share: request recording, fault selection and the control API.

Every request is recorded *before* any fault or validation is applied, so a test can check
what reached the "vendor" even when the vendor then failed (the guard tests rely on this:
PII must never reach a vendor, whatever the vendor answered).

Control endpoints, for a fake running in another process (e.g. behind a gateway under test):
``POST /_fake/faults`` with ``{"faults": ["status=503", "ok"]}`` queues faults,
``GET /_fake/requests`` lists recorded bodies, ``DELETE /_fake/requests`` forgets them.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tests.fakes.faults import Fault, FaultScript
from tests.fakes.server import RecordedRequest, drop_before_headers


def json_response(
    content: Any, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(content),
        status_code=status_code,
        headers=headers,
        media_type="application/json",
    )


class FakeVendor:
    """Base of the fakes; subclasses add the vendor's routes and wire format."""

    def __init__(self, *, api_key: str | None = None, record: bool = True) -> None:
        self.api_key = api_key
        self.record = record
        self.requests: list[RecordedRequest] = []
        self.faults = FaultScript()

    @property
    def bodies(self) -> list[Any]:
        """The JSON bodies received so far, oldest first."""
        return [r.body for r in self.requests]

    def control_routes(self) -> list[Route]:
        return [
            Route("/_fake/faults", self._push_faults, methods=["POST"]),
            Route("/_fake/requests", self._list_requests, methods=["GET"]),
            Route("/_fake/requests", self._clear_requests, methods=["DELETE"]),
        ]

    async def intake(self, request: Request) -> tuple[Any, Fault, bool]:
        """Read, record and pick a fault; acts out ``delay`` and ``drop=headers``.

        Returns the parsed body (``None`` if not JSON), the fault, and whether the
        connection is already gone (the endpoint then returns without answering).
        """
        raw = await request.body()
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = None
        if self.record:
            client = request.client
            peer = f"{client.host}:{client.port}" if client else ""
            self.requests.append(
                RecordedRequest(request.url.path, dict(request.headers), body, peer)
            )
        model = body.get("model") if isinstance(body, dict) else None
        fault = self.faults.choose(request.headers, model)
        if fault.delay_s:
            await asyncio.sleep(fault.delay_s)
        if fault.drop == "headers":
            await drop_before_headers(request)
            return body, fault, True
        return body, fault, False

    async def _push_faults(self, request: Request) -> Response:
        data = orjson.loads(await request.body())
        self.faults.push(*[str(spec) for spec in data.get("faults", [])])
        return json_response({"queued": len(data.get("faults", []))})

    async def _list_requests(self, request: Request) -> Response:
        return json_response([r.body for r in self.requests])

    async def _clear_requests(self, request: Request) -> Response:
        self.requests.clear()
        return json_response({"cleared": True})
