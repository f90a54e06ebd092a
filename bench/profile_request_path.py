"""Where the guards-off request path spends its CPU, stage by stage (cProfile under load).

The gateway runs in this process on uvicorn + uvloop + httptools (as ``wardgate serve``
does), pinned to core 0, with guards off and the canned upstream of ``bench/loadgen.py``;
a load generator in a child process (core 1) sends ``--requests`` chat completions per mode
(plain, then streamed with 20 chunks) from ``--clients`` keep-alive connections. cProfile
records only the event-loop thread, during the load only; the audit writer's thread is
measured separately by its CPU time.

cProfile slows Python code down (about 1.5–2×), so the table reports each stage's *share*
of the profiled request path, and CPU ms per request measured without the profiler in a
second pass of the same load. The stages are cumulative times of the functions that
implement them (a coroutine's time is counted only while it runs, not while it waits).

    .venv/bin/python bench/profile_request_path.py               # ~1 minute
    .venv/bin/python bench/profile_request_path.py --dump /tmp/p  # also keep .pstats files
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
TICKS = os.sysconf("SC_CLK_TCK")

#: stage → functions (file suffix, function name) whose cumulative time is that stage's.
STAGES: dict[str, list[tuple[str, str]]] = {
    "body read and parse": [
        ("gateway/body.py", "read_json_body"),
        ("gateway/body.py", "parse_chat_request"),
    ],
    "auth and key cache": [("gateway/auth.py", "authenticate")],
    "rate limiter": [
        ("ratelimit/local.py", "check"),
        ("ratelimit/local.py", "consume_tokens"),
        ("ratelimit/base.py", "headers"),
    ],
    "guards (none configured)": [
        ("guards/pipeline.py", "check_request"),
        ("guards/pipeline.py", "check_response"),
        ("guards/pipeline.py", "output_scanner"),
        ("guards/streaming.py", "afeed"),
        ("guards/streaming.py", "afinish"),
    ],
    "routing policy": [
        ("routing/policy.py", "decide"),
        ("routing/policy.py", "request_label"),
        ("gateway/chat_route.py", "_needs_pseudonymisation"),
        ("routing/policy.py", "as_dict"),
    ],
    "failover + upstream client": [
        ("routing/failover.py", "complete"),
        ("routing/failover.py", "__anext__"),
        ("routing/failover.py", "next_batch"),
        ("routing/failover.py", "aclose"),
    ],
    "response build": [
        ("gateway/responses.py", "completion_body"),
        ("gateway/responses.py", "render"),
        ("starlette/responses.py", "__init__"),
        ("gateway/responses.py", "role"),
        ("gateway/responses.py", "content"),
        ("gateway/responses.py", "finish"),
        ("gateway/responses.py", "usage"),
        ("gateway/responses.py", "done"),
    ],
    "signed receipt (Ed25519, provenance)": [("gateway/chat_route.py", "_receipt")],
    "audit record + metrics (_finish)": [("gateway/chat_route.py", "_finish")],
}
METRICS_MODULE = "prometheus_client/metrics.py"


def thread_cpu(tid: int) -> float:
    stat = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / TICKS


def _find(stats: pstats.Stats, suffix: str, name: str) -> list[tuple[Any, ...]]:
    return [
        key
        for key in stats.stats  # type: ignore[attr-defined]
        if key[0].endswith(suffix) and key[2] == name
    ]


def _cumulative(stats: pstats.Stats, suffix: str, name: str) -> float:
    return sum(stats.stats[key][3] for key in _find(stats, suffix, name))  # type: ignore[attr-defined]


def _metrics_under(stats: pstats.Stats, suffix: str, name: str) -> float:
    """Time of prometheus_client calls made directly from the function ``name``."""
    total = 0.0
    for key, (_cc, _nc, _tt, _ct, callers) in stats.stats.items():  # type: ignore[attr-defined]
        if not key[0].endswith(METRICS_MODULE):
            continue
        for caller, timing in callers.items():
            if caller[0].endswith(suffix) and caller[2] == name:
                total += timing[3]
    return total


def breakdown(stats: pstats.Stats, requests: int) -> dict[str, Any]:
    # Everything the event-loop thread ran in Python, or in C called from Python (the loop's
    # own waiting happens in uvloop's C code, called by nothing profiled).
    total = sum(entry[2] for entry in stats.stats.values())  # type: ignore[attr-defined]
    stages = {
        stage: sum(_cumulative(stats, s, n) for s, n in funcs) for stage, funcs in STAGES.items()
    }
    metrics = _metrics_under(stats, "gateway/chat_route.py", "_finish") + _cumulative(
        stats, "gateway/metrics.py", "request_done"
    )
    finish = stages.pop("audit record + metrics (_finish)")
    stages["audit record (build + enqueue)"] = finish - metrics
    stages["metrics (prometheus_client)"] = metrics
    stages["HTTP server, framework, event loop (rest)"] = total - sum(stages.values())
    calls: dict[str, float] = {}
    for (path, _line, name), (_cc, nc, *_rest) in stats.stats.items():  # type: ignore[attr-defined]
        if path == "~" and "orjson." in name:
            label = name.removeprefix("<built-in method ").rstrip(">")
        elif path.endswith("json/__init__.py") and name in ("dumps", "loads"):
            label = f"json.{name}"
        elif name == "model_validate" or name == "model_dump":
            label = f"pydantic {name}"
        else:
            continue
        calls[label] = calls.get(label, 0) + nc / requests
    return {
        "profiled_ms_per_request": total * 1000 / requests,
        "stages_percent": {k: v / total * 100 for k, v in stages.items()},
        "json_calls_per_request": {k: round(v, 2) for k, v in sorted(calls.items())},
    }


def _config(tmp: Path, upstream_port: int) -> Any:
    from wardgate.config import GatewayConfig

    return GatewayConfig.model_validate(
        {
            "server": {"host": "127.0.0.1", "port": 0, "log_level": "warning"},
            "database_url": f"sqlite:///{tmp / 'profile.db'}",
            "auth": {"secret_file": str(tmp / "secret"), "secret_env": "WG_PROFILE_NO_SECRET"},
            "guards": {"input": [], "output": []},
            "models": [
                {
                    "name": "fast",
                    "backend": "openai",
                    "base_url": f"http://127.0.0.1:{upstream_port}/v1",
                    "api_key_env": "BENCH_UPSTREAM_KEY",
                    "retries": 0,
                    "tags": {"deployment": "on_prem", "weights": "open"},
                }
            ],
        }
    )


LOAD = """
import asyncio, json, sys
sys.path.insert(0, {bench!r})
import loadgen, gateway_overhead
headers = {{"content-type": "application/json", "authorization": "Bearer {key}"}}
async def go():
    r = await loadgen.closed_loop("127.0.0.1", {port}, "/v1/chat/completions",
        gateway_overhead.body({stream}), headers, clients={clients}, requests={requests})
    print(json.dumps({{"errors": r.errors, "done": len(r.latencies), "p50": r.p50}}))
asyncio.run(go())
"""


async def _load(port: int, key: str, stream: bool, clients: int, requests: int) -> dict[str, Any]:
    code = LOAD.format(
        bench=str(BENCH), key=key, port=port, stream=stream, clients=clients, requests=requests
    )
    proc = await asyncio.create_subprocess_exec(
        "taskset", "-c", "1", sys.executable, "-c", code, stdout=subprocess.PIPE
    )
    out, _ = await proc.communicate()
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


async def run(args: argparse.Namespace, tmp: Path, upstream_port: int) -> dict[str, Any]:
    import uvicorn

    from wardgate.gateway.app import create_app
    from wardgate.gateway.service import Gateway

    config = _config(tmp, upstream_port)
    gateway = Gateway(config)
    _, key = gateway.keys.create(owner="profile")
    gateway.keys.create(owner="admin", admin=True)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config, gateway=gateway),
            host="127.0.0.1",
            port=0,
            loop="none",
            http="httptools",
            log_level="warning",
            access_log=False,
            lifespan="on",
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    writer = next(t for t in threading.enumerate() if t.name.startswith("wardgate-audit"))
    results: dict[str, Any] = {}
    for stream in (False, True):
        mode = "stream" if stream else "plain"
        await _load(port, key, stream, args.clients, 500)  # warm-up
        # Pass 1, no profiler: CPU per request of the loop thread and the audit writer.
        loop_tid, writer_tid = threading.get_native_id(), writer.native_id
        assert writer_tid is not None
        cpu0, audit0 = thread_cpu(loop_tid), thread_cpu(writer_tid)
        plain = await _load(port, key, stream, args.clients, args.requests)
        assert gateway.audit.flush()
        cpu_ms = (thread_cpu(loop_tid) - cpu0) * 1000 / args.requests
        audit_ms = (thread_cpu(writer_tid) - audit0) * 1000 / args.requests
        # Pass 2, profiled.
        profiler = cProfile.Profile()
        profiler.enable()
        profiled = await _load(port, key, stream, args.clients, args.requests)
        profiler.disable()
        stats = pstats.Stats(profiler)
        if args.dump:
            args.dump.mkdir(parents=True, exist_ok=True)
            stats.dump_stats(str(args.dump / f"{mode}.pstats"))
        result = breakdown(stats, args.requests)
        result.update(
            {
                "loop_thread_cpu_ms_per_request": cpu_ms,
                "audit_writer_cpu_ms_per_request": audit_ms,
                "errors": plain["errors"] + profiled["errors"],
            }
        )
        results[mode] = result
        _print(mode, result)
    server.should_exit = True
    await task
    return results


def _print(mode: str, result: dict[str, Any]) -> None:
    print(
        f"\n{mode}: event-loop thread {result['loop_thread_cpu_ms_per_request']:.3f} CPU-ms/request"
        f" (profiled: {result['profiled_ms_per_request']:.3f} ms); audit writer thread "
        f"{result['audit_writer_cpu_ms_per_request']:.3f} CPU-ms/request; errors {result['errors']}"
    )
    for stage, share in sorted(result["stages_percent"].items(), key=lambda kv: -kv[1]):
        cpu = share / 100 * result["loop_thread_cpu_ms_per_request"]
        print(f"  {stage:<44} {share:5.1f} %  ~{cpu:.3f} ms")
    print(f"  JSON/validation calls per request: {result['json_calls_per_request']}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--dump", type=Path, help="folder for the .pstats files")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()

    import uvloop

    os.environ.setdefault("BENCH_UPSTREAM_KEY", "sk-bench")
    upstream_port = _free_port()
    upstream = subprocess.Popen(
        ["taskset", "-c", "1", sys.executable, "-c",
         f"import asyncio, sys; sys.path.insert(0, {str(BENCH)!r}); "
         f"import loadgen; asyncio.run(loadgen.run_upstream({upstream_port}))"],
    )  # fmt: skip
    os.sched_setaffinity(0, {0})
    try:
        time.sleep(0.5)
        with tempfile.TemporaryDirectory() as tmp:
            results = uvloop.run(run(args, Path(tmp), upstream_port))
    finally:
        upstream.terminate()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


if __name__ == "__main__":
    main()
