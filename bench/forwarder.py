"""The floor: a bare forwarder that any Python proxy on this machine must at least pay for.

A raw ASGI app on uvicorn + uvloop + httptools that forwards each request's body, as it came,
to the upstream through one pooled aiohttp session, and streams the answer back chunk by
chunk as it arrives. No authentication, no parsing, no limits, no audit, no logging, no
metrics. ``bench/gateway_overhead.py`` runs it beside the gateway so every run shows
gateway vs forwarder vs direct from the same load generator.

    .venv/bin/python bench/forwarder.py --port 8090 --upstream http://127.0.0.1:8091
"""

from __future__ import annotations

import argparse
from typing import Any

import aiohttp
import uvicorn

#: Request headers the upstream needs; everything else (host, length, hop-by-hop) is the
#: client's connection's business. aiohttp sets Content-Length from the body.
_FORWARDED = (b"content-type", b"authorization", b"accept")


class Forwarder:
    """ASGI app: the request, byte for byte, to ``upstream``; the answer back as it comes."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        chunks = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        headers = {
            name.decode(): value.decode() for name, value in scope["headers"] if name in _FORWARDED
        }
        assert self.session is not None
        async with self.session.request(
            scope["method"], self.upstream + scope["path"], data=b"".join(chunks), headers=headers
        ) as upstream:
            content_type = upstream.headers.get("content-type", "application/octet-stream")
            await send(
                {
                    "type": "http.response.start",
                    "status": upstream.status,
                    "headers": [(b"content-type", content_type.encode())],
                }
            )
            async for chunk in upstream.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                connector = aiohttp.TCPConnector(limit=100, keepalive_timeout=30)
                self.session = aiohttp.ClientSession(connector=connector)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.session is not None:
                    await self.session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="base URL, e.g. http://127.0.0.1:8091")
    args = parser.parse_args()
    uvicorn.run(
        Forwarder(args.upstream),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
