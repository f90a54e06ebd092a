"""Run a fake vendor as its own process, for benchmarks and for a gateway started by hand.

    python -m tests.fakes.serve openai --port 0              # FAKE_OPENAI_BASE_URL=http://...:N/v1
    python -m tests.fakes.serve anthropic --api-key sk-x     # FAKE_ANTHROPIC_BASE_URL=http://...:N

The first line on stdout names the base URL in each SDK's convention (OpenAI's includes
``/v1``, Anthropic's does not). Faults are queued through ``POST /_fake/faults``; recorded
bodies (with ``--record``) are listed by ``GET /_fake/requests``. uvicorn picks uvloop and
httptools when installed, so the OpenAI fake is cheap enough to stand in for a fast upstream.
"""

from __future__ import annotations

import argparse

import uvicorn
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.server import free_socket


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.serve", description=__doc__)
    parser.add_argument("vendor", choices=["openai", "anthropic"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--api-key", default=None, help="require this key")
    parser.add_argument("--record", action="store_true", help="keep request bodies in memory")
    args = parser.parse_args(argv)
    if args.vendor == "openai":
        fake: FakeOpenAI | FakeAnthropic = FakeOpenAI(api_key=args.api_key, record=args.record)
        suffix = "/v1"
    else:
        fake = FakeAnthropic(api_key=args.api_key, record=args.record)
        suffix = ""
    sock = free_socket(args.host, args.port)
    port = sock.getsockname()[1]
    print(f"FAKE_{args.vendor.upper()}_BASE_URL=http://{args.host}:{port}{suffix}", flush=True)
    config = uvicorn.Config(fake.app, log_level="warning", lifespan="off", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
