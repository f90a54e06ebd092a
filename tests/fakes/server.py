"""Running a fake vendor server for real: uvicorn on a free port, in a background thread.

Also the two tricks the fault modes need that ASGI itself cannot express: closing the TCP
connection before any response byte (``drop=headers``) and half-way through a body
(``drop=mid``). uvicorn's per-request ``send`` is a bound method of its request cycle, which
holds the transport; :class:`TransportExposer` hands that ``send`` to the endpoints through
the scope so they can close the socket the way a crashing upstream or a flaky load balancer
would.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

_RAW_SEND = "fake.raw_send"


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """What the fake received: the path, the headers (lower-case names), the JSON body, and
    the client's ``host:port`` (the same peer on two requests means a reused connection)."""

    path: str
    headers: dict[str, str]
    body: Any = field(default=None)
    peer: str = ""


class TransportExposer:
    """ASGI wrapper that puts uvicorn's raw ``send`` into the scope (see module doc)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[_RAW_SEND] = send
        await self.app(scope, receive, send)


def close_connection(request: Request) -> None:
    """Cut the client's TCP connection now.

    ``abort`` rather than ``close``: a closing transport still accepts (and flushes) writes,
    so the framework's final empty body chunk would reach the client and complete the
    chunked body, hiding the drop. Bytes already handed to the kernel are still delivered.
    """
    raw_send = request.scope.get(_RAW_SEND)
    cycle = getattr(raw_send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise RuntimeError("close_connection needs uvicorn (h11 or httptools) as the server")
    transport.abort()


async def drop_before_headers(request: Request) -> None:
    """Close the connection without a response, then wait for uvicorn to notice."""
    close_connection(request)
    for _ in range(100):
        if await request.is_disconnected():
            return
        await asyncio.sleep(0.01)


def free_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


@contextlib.contextmanager
def run_server(app: ASGIApp, *, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve ``app`` on a free port in a daemon thread; yields ``http://host:port``."""
    sock = free_socket(host)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level="warning",
        lifespan="off",
        loop="asyncio",
        access_log=False,
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, daemon=True, name=f"fake-{port}"
    )
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("fake server did not start")
            time.sleep(0.01)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
