"""Gateway overhead benchmark: added latency, CPU per request, max throughput, RSS growth,
and the embedded model's tokens/s through the gateway versus llama-cpp-python directly.

Three targets side by side, from the same load generator: the upstream directly, the bare
forwarder (``bench/forwarder.py``: the floor for any Python proxy here) and the gateway.

Layout on a 2-core machine: the gateway and the forwarder run pinned to core 0 (so
"requests/s" is on one core); the fake upstream and this load generator share core 1. Added
latency = latency through a proxy minus latency straight to the same upstream, at the same
concurrency.

    .venv/bin/python bench/gateway_overhead.py            # full run (~8 minutes)
    .venv/bin/python bench/gateway_overhead.py --quick    # smoke run
    .venv/bin/python bench/gateway_overhead.py --monitor-ab   # the monitor's CPU cost (~2 min)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import LoadResult, closed_loop, open_loop

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wait_ready(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(url)


def start_gateway(
    tmp: Path, upstream_port: int, guards: bool, *, name: str | None = None,
    overrides: dict[str, object] | None = None,
) -> tuple[subprocess.Popen[bytes], int, str]:  # fmt: skip
    from wardgate.config import AuthConfig
    from wardgate.store.db import create_engine_for, upgrade_database
    from wardgate.store.keys import KeyStore
    from wardgate.store.secret import load_or_create_secret

    port = free_port()
    name = name or ("guards" if guards else "plain")
    db = f"sqlite:///{tmp / f'gw-{name}.db'}"
    auth = {"secret_file": str(tmp / "secret"), "secret_env": "WARDGATE_BENCH_NO_SECRET"}
    config: dict[str, object] = {
        "server": {"host": "127.0.0.1", "port": port, "log_level": "warning"},
        "database_url": db,
        "auth": auth,
        "models": [
            {
                "name": "fast",
                "backend": "openai",
                "base_url": f"http://127.0.0.1:{upstream_port}/v1",
                "api_key_env": "BENCH_UPSTREAM_KEY",
                "retries": 0,
                "tags": {"deployment": "on_prem", "weights": "open"},
            },
            {
                "name": "smol",
                "backend": "llamacpp",
                "n_ctx": 1024,
                "n_threads": 1,
                "max_output_tokens": 256,
            },
        ],
    }
    if not guards:
        config["guards"] = {"input": [], "output": []}
    config.update(overrides or {})
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    upgrade_database(db)
    store = KeyStore(create_engine_for(db), load_or_create_secret(AuthConfig.model_validate(auth)))
    _, key = store.create(owner="bench")
    store.create(owner="admin", admin=True)  # so `serve` does not print a first-start key
    env = {**os.environ, "BENCH_UPSTREAM_KEY": "sk-bench"}
    proc = subprocess.Popen(
        ["taskset", "-c", "0", PY, "-m", "wardgate.cli.main", "serve", "--config", str(path)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_ready(f"http://127.0.0.1:{port}/readyz")
    return proc, port, key


def body(stream: bool, model: str = "fast") -> bytes:
    payload: dict[str, object] = {
        "model": model,
        "messages": [{"role": "user", "content": "Say hello to the benchmark, please."}],
        "max_tokens": 32,
    }
    if stream:
        payload["stream"] = True
        payload["stream_options"] = {"include_usage": True}
    return json.dumps(payload).encode()


def everyday_bodies(limit: int) -> list[bytes]:
    """Distinct real chat questions (scripts/data/benign_everyday.txt), plain mode."""
    path = Path(__file__).resolve().parent.parent / "scripts" / "data" / "benign_everyday.txt"
    lines = [x for x in path.read_text().splitlines() if x and not x.startswith("#")][:limit]
    return [
        json.dumps(
            {"model": "fast", "messages": [{"role": "user", "content": x}], "max_tokens": 32}
        ).encode()
        for x in lines
    ]


async def varied(port: int, up_port: int, key: str, quick: bool) -> dict[str, object]:
    """1 client, each request a new chat question: the guards' real cost, no cache hits.

    Questions the guards refuse get a 400 ("errors" below); their latency counts all the same.
    """
    bodies = everyday_bodies(200 if quick else 1000)
    gw_headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}
    up_headers = {"content-type": "application/json", "authorization": "Bearer sk-bench"}
    path = "/v1/chat/completions"
    n = len(bodies)
    direct = await closed_loop(
        "127.0.0.1", up_port, path, bodies, up_headers, clients=1, requests=n
    )
    via = await closed_loop("127.0.0.1", port, path, bodies, gw_headers, clients=1, requests=n)
    print(row(f"plain c=1 {n} distinct questions direct", direct))
    print(row(f"plain c=1 {n} distinct questions via gw", via))
    added = {q: via.pct(q) - direct.pct(q) for q in (0.5, 0.9, 0.99)}
    print(
        f"{'':<34} added p50 {added[0.5]:6.2f} ms  p90 {added[0.9]:6.2f} ms  "
        f"p99 {added[0.99]:6.2f} ms  (refused: {via.errors})"
    )
    return {"requests": n, "added_ms": added, "refused": via.errors}


def row(label: str, r: LoadResult) -> str:
    return (
        f"{label:<34} p50 {r.p50:7.2f} ms  p99 {r.pct(0.99):7.2f} ms  "
        f"{r.rps:8.1f} req/s  errors {r.errors}"
    )


def start_forwarder(upstream_port: int) -> tuple[subprocess.Popen[bytes], int]:
    """The bare forwarder (bench/forwarder.py), on the gateway's core."""
    port = free_port()
    proc = subprocess.Popen(
        ["taskset", "-c", "0", PY, str(Path(__file__).parent / "forwarder.py"),
         "--port", str(port), "--upstream", f"http://127.0.0.1:{upstream_port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wait_ready(f"http://127.0.0.1:{port}/ready")
    return proc, port


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


async def sample_round(port: int, headers: dict[str, str], pid: int | None, path: str,
                       payload: bytes, clients: int, requests: int) -> dict[str, float]:
    """One closed-loop pass against one target: p50, p99, req/s, errors, and the target
    process's CPU ms per request (0 when it has no process of its own, e.g. the upstream)."""
    cpu0 = cpu_seconds(pid) if pid else 0.0
    r = await closed_loop("127.0.0.1", port, path, payload, headers, clients=clients,
                          requests=requests)  # fmt: skip
    cpu = (cpu_seconds(pid) - cpu0) * 1000 / max(1, len(r.latencies)) if pid else 0.0
    return {"p50": r.p50, "p99": r.pct(0.99), "rps": r.rps, "cpu": cpu, "errors": r.errors}


async def overhead(
    port: int,
    up_port: int,
    key: str,
    quick: bool,
    pid: int,
    fwd_port: int,
    fwd_pid: int,
    ratios_only: bool = False,
) -> dict[str, object]:
    """Direct, forwarder and gateway, interleaved in rounds at each concurrency.

    On a shared machine the load of other jobs drifts within seconds, so the three targets are
    measured back to back, ``rounds`` times, and each figure is the median over rounds. The
    ratios (gateway / forwarder) are the issue-19 targets; they come from the same rounds.
    """
    out: dict[str, object] = {}
    gw_headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}
    up_headers = {"content-type": "application/json", "authorization": "Bearer sk-bench"}
    path = "/v1/chat/completions"
    n = 400 if quick else 2000
    rounds = 1 if quick else 3
    targets = {
        "direct": (up_port, up_headers, None),
        "forwarder": (fwd_port, up_headers, fwd_pid),
        "gateway": (port, gw_headers, pid),
    }
    for stream in (False, True):
        mode = "stream" if stream else "plain"
        b = body(stream)
        for target in ("forwarder", "gateway"):  # warm-up
            t_port, t_headers, _ = targets[target]
            await closed_loop("127.0.0.1", t_port, path, b, t_headers, clients=10, requests=300)
        for clients in (1, 10) if ratios_only else (1, 10, 50):
            samples: dict[str, dict[str, list[float]]] = {
                t: {"p50": [], "p99": [], "rps": [], "cpu": [], "errors": []} for t in targets
            }
            for _ in range(rounds):
                for target, (t_port, t_headers, t_pid) in targets.items():
                    one = await sample_round(t_port, t_headers, t_pid, path, b, clients, n)
                    for key, value in one.items():
                        samples[target][key].append(value)
            med = {t: {k: _median(v) for k, v in got.items()} for t, got in samples.items()}
            direct = med["direct"]
            for target in targets:
                m = med[target]
                cpu_text = f"  CPU {m['cpu']:5.2f} ms/req" if target != "direct" else ""
                print(
                    f"{mode} c={clients} {target:<9} p50 {m['p50']:7.2f} ms  p99 {m['p99']:7.2f} ms"
                    f"  {m['rps']:8.1f} req/s{cpu_text}  errors {int(m['errors'])}"
                )
            added = {t: med[t]["p50"] - direct["p50"] for t in ("forwarder", "gateway")}
            added99 = {t: med[t]["p99"] - direct["p99"] for t in ("forwarder", "gateway")}
            fwd, gw = med["forwarder"], med["gateway"]
            ratios = {
                "added_p50": added["gateway"] / added["forwarder"]
                if added["forwarder"] > 0
                else float("nan"),
                "cpu": gw["cpu"] / fwd["cpu"] if fwd["cpu"] > 0 else float("nan"),
                "rps": gw["rps"] / fwd["rps"] if fwd["rps"] > 0 else float("nan"),
            }
            print(
                f"{'':<16} added p50: forwarder {added['forwarder']:5.2f} ms, gateway "
                f"{added['gateway']:5.2f} ms ({ratios['added_p50']:.2f}x); CPU "
                f"{ratios['cpu']:.2f}x; req/s {ratios['rps'] * 100:.0f}% of the forwarder's"
            )
            out[f"{mode}_c{clients}"] = {
                "rounds": rounds,
                "requests_per_round": n,
                "direct_p50_ms": direct["p50"],
                "direct_p99_ms": direct["p99"],
                "forwarder_p50_ms": fwd["p50"],
                "forwarder_added_p50_ms": added["forwarder"],
                "forwarder_added_p99_ms": added99["forwarder"],
                "forwarder_rps": fwd["rps"],
                "forwarder_cpu_ms_per_request": fwd["cpu"],
                "gateway_p50_ms": gw["p50"],
                "gateway_p99_ms": gw["p99"],
                "added_p50_ms": added["gateway"],
                "added_p99_ms": added99["gateway"],
                "gateway_rps": gw["rps"],
                "cpu_ms_per_request": gw["cpu"],
                "errors": gw["errors"],
                "gateway_over_forwarder": ratios,
            }
        if ratios_only:
            continue
        peak = out[f"{mode}_c50"]["gateway_rps"]  # type: ignore[index]
        rate = round(0.5 * float(peak))
        seconds = 5 if quick else 15
        direct_r = await open_loop(
            "127.0.0.1", up_port, path, b, up_headers, rate=rate, seconds=seconds
        )
        via = await open_loop("127.0.0.1", port, path, b, gw_headers, rate=rate, seconds=seconds)
        print(row(f"{mode} fixed {rate}/s direct", direct_r))
        print(row(f"{mode} fixed {rate}/s via gateway", via))
        print(
            f"{'':<34} added p50 {via.p50 - direct_r.p50:6.2f} ms  added p99 "
            f"{via.pct(0.99) - direct_r.pct(0.99):6.2f} ms"
        )
        out[f"{mode}_fixed_rate"] = {
            "rate": rate,
            "added_p50_ms": via.p50 - direct_r.p50,
            "added_p99_ms": via.pct(0.99) - direct_r.pct(0.99),
            "errors": via.errors,
        }
    return out


async def rss_soak(port: int, key: str, pid: int, total: int) -> dict[str, float]:
    headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}
    path = "/v1/chat/completions"
    await closed_loop("127.0.0.1", port, path, body(False), headers, clients=20, requests=2000)
    before = rss_mb(pid)
    half = total // 2
    await closed_loop("127.0.0.1", port, path, body(False), headers, clients=20, requests=half)
    await closed_loop(
        "127.0.0.1", port, path, body(True), headers, clients=20, requests=total - half
    )
    after = rss_mb(pid)
    growth = (after - before) / before * 100
    print(
        f"RSS after warm-up {before:.1f} MB, after {total} more requests {after:.1f} MB "
        f"({growth:+.2f}%)"
    )
    return {"rss_before_mb": before, "rss_after_mb": after, "growth_percent": growth}


def model_tokens_per_second(port: int, key: str, runs: int) -> dict[str, float]:
    prompt = [{"role": "user", "content": "Write a long story about a dragon who learns to cook."}]
    code = f"""
import json, time, llama_cpp
from wardgate.embedded import embedded_model_path
llm = llama_cpp.Llama(model_path=str(embedded_model_path()), n_ctx=1024, n_threads=1, verbose=False)
rates = []
for i in range({runs}):
    llm.reset()
    t = time.perf_counter()
    r = llm.create_chat_completion(messages={prompt!r}, max_tokens=200, temperature=0, seed=1)
    rates.append(r["usage"]["completion_tokens"] / (time.perf_counter() - t))
print(json.dumps(sorted(rates)[len(rates) // 2]))
"""
    direct = float(
        subprocess.run(
            ["taskset", "-c", "0", PY, "-c", code], capture_output=True, text=True, check=True
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    rates = []
    client = httpx.Client(timeout=300, headers={"authorization": f"Bearer {key}"})
    for _ in range(runs):
        t = time.perf_counter()
        r = client.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json={
                "model": "smol",
                "messages": prompt,
                "max_tokens": 200,
                "temperature": 0,
                "seed": 1,
            },
        ).json()
        rates.append(r["usage"]["completion_tokens"] / (time.perf_counter() - t))
    via = sorted(rates)[len(rates) // 2]
    print(
        f"embedded SmolLM2 (1 thread, core 0): direct {direct:.1f} tok/s, via gateway "
        f"{via:.1f} tok/s ({via / direct * 100:.1f}% of direct)"
    )
    return {"direct_tokens_per_s": direct, "gateway_tokens_per_s": via, "ratio": via / direct}


def _metric(port: int, name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith(name + " ") or line.startswith(name + "{")
    )


async def monitor_ab(tmp: Path, up_port: int, quick: bool) -> dict[str, object]:
    """The monitor's cost: the same load on a gateway with the monitor on and one with it off
    (rounds interleaved, so both see the same machine), plus the detectors' own CPU time as
    the monitor counts it (``wardgate_monitor_cpu_seconds`` / ``wardgate_monitor_events``)."""
    on, on_port, on_key = start_gateway(tmp, up_port, False, name="monitor-on")
    off, off_port, off_key = start_gateway(
        tmp, up_port, False, name="monitor-off", overrides={"monitor": {"enabled": False}}
    )
    path, b = "/v1/chat/completions", body(False)
    cpu: dict[str, list[float]] = {"on": [], "off": []}
    try:
        for port, key in ((on_port, on_key), (off_port, off_key)):
            headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}
            await closed_loop("127.0.0.1", port, path, b, headers, clients=10, requests=300)
        for _ in range(2 if quick else 5):
            for label, proc, port, key in (
                ("on", on, on_port, on_key),
                ("off", off, off_port, off_key),
            ):
                headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}
                cpu0 = cpu_seconds(proc.pid)
                result = await closed_loop(
                    "127.0.0.1", port, path, b, headers, clients=10, requests=500 if quick else 2000
                )
                cpu[label].append((cpu_seconds(proc.pid) - cpu0) * 1000 / len(result.latencies))
        detector_ms = (
            _metric(on_port, "wardgate_monitor_cpu_seconds_total")
            * 1000
            / max(1.0, _metric(on_port, "wardgate_monitor_events_total"))
        )
    finally:
        for proc in (on, off):
            proc.terminate()
            proc.wait(timeout=30)
    med = {k: sorted(v)[len(v) // 2] for k, v in cpu.items()}
    print(f"gateway CPU per request, monitor on  {med['on']:.3f} ms  (rounds {cpu['on']})")
    print(f"gateway CPU per request, monitor off {med['off']:.3f} ms  (rounds {cpu['off']})")
    print(
        f"difference {med['on'] - med['off']:+.3f} ms; detectors' own thread CPU "
        f"{detector_ms * 1000:.1f} µs per event"
    )
    return {
        "cpu_ms_on": cpu["on"],
        "cpu_ms_off": cpu["off"],
        "median_diff_ms": med["on"] - med["off"],
        "detector_ms_per_event": detector_ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer requests (smoke test)")
    parser.add_argument("--guards", action="store_true", help="run with the default guard pipeline")
    parser.add_argument("--json", type=Path, help="also write results as JSON here")
    parser.add_argument(
        "--monitor-ab",
        action="store_true",
        help="only compare gateway CPU with the monitor on and off",
    )
    parser.add_argument("--no-model", action="store_true", help="skip the tokens/s comparison")
    parser.add_argument(
        "--ratios",
        action="store_true",
        help="only the gateway/forwarder/direct rounds at 1 and 10 clients (~2 minutes): "
        "no 50 clients, fixed rate, RSS soak or model",
    )
    parser.add_argument(
        "--soak", type=int, default=None, help="requests in the RSS soak (default 20,000)"
    )
    args = parser.parse_args()

    up_port = free_port()
    upstream = subprocess.Popen(
        [
            "taskset",
            "-c",
            "1",
            PY,
            "-c",
            f"import asyncio, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            f"import loadgen; asyncio.run(loadgen.run_upstream({up_port}))",
        ],
    )
    os.sched_setaffinity(0, {1})
    results: dict[str, object] = {"guards": args.guards}
    if args.monitor_ab:
        with tempfile.TemporaryDirectory() as tmp_dir:
            try:
                results["monitor"] = asyncio.run(monitor_ab(Path(tmp_dir), up_port, args.quick))
            finally:
                upstream.terminate()
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
        return
    with tempfile.TemporaryDirectory() as tmp_dir:
        gateway, port, key = start_gateway(Path(tmp_dir), up_port, args.guards)
        forwarder, fwd_port = start_forwarder(up_port)
        try:
            results["overhead"] = asyncio.run(
                overhead(
                    port, up_port, key, args.quick, gateway.pid, fwd_port, forwarder.pid,
                    args.ratios,
                )
            )  # fmt: skip
            if args.guards and not args.ratios:
                results["varied"] = asyncio.run(varied(port, up_port, key, args.quick))
            if not args.ratios:
                soak = args.soak or (2000 if args.quick else 20000)
                results["rss"] = asyncio.run(rss_soak(port, key, gateway.pid, soak))
            if not args.no_model and not args.ratios:
                results["model"] = model_tokens_per_second(port, key, 1 if args.quick else 3)
        finally:
            forwarder.terminate()
            gateway.terminate()
            gateway.wait(timeout=30)
            upstream.terminate()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
