"""Two builds of the gateway head to head, beside the bare forwarder, in the same rounds.

``gateway_overhead.py --ratios`` measures one build; on a shared machine two such runs a
minute apart disagree by more than most changes are worth. This runs the forwarder, a
gateway from each source tree and the upstream directly, interleaved round by round (each
round: every target in turn, 2,000 requests), at 1 and 10 clients, plain and streamed, and
prints each build's gateway/forwarder ratios from the same minutes of machine load. The
gateways and the forwarder share core 0 (only the one being measured is busy); the upstream
and this load generator share core 1.

    git archive BASE | tar -x -C /tmp/base
    .venv/bin/python bench/overhead_ab.py --before /tmp/base/src --after src --json /tmp/ab.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gateway_overhead as go
from loadgen import closed_loop


async def compare(sources: dict[str, str], rounds: int, requests: int) -> dict[str, object]:
    up_port = go.free_port()
    bench = str(Path(__file__).resolve().parent)
    upstream = subprocess.Popen(
        ["taskset", "-c", "1", go.PY, "-c",
         f"import asyncio, sys; sys.path.insert(0, {bench!r}); "
         f"import loadgen; asyncio.run(loadgen.run_upstream({up_port}))"],
    )  # fmt: skip
    os.sched_setaffinity(0, {1})
    procs: list[subprocess.Popen[bytes]] = [upstream]
    out: dict[str, object] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            up_headers = {"content-type": "application/json", "authorization": "Bearer sk-bench"}
            fwd, fwd_port = go.start_forwarder(up_port)
            procs.append(fwd)
            targets: dict[str, tuple[int, dict[str, str], int | None]] = {
                "forwarder": (fwd_port, up_headers, fwd.pid)
            }
            for name, src in sources.items():
                os.environ["PYTHONPATH"] = str(Path(src).resolve())
                proc, port, key = go.start_gateway(Path(tmp), up_port, False, name=name)
                procs.append(proc)
                headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}
                targets[name] = (port, headers, proc.pid)
            targets["direct"] = (up_port, up_headers, None)
            path = "/v1/chat/completions"
            for stream in (False, True):
                mode = "stream" if stream else "plain"
                body = go.body(stream)
                for port, headers, _ in targets.values():  # warm-up
                    await closed_loop("127.0.0.1", port, path, body, headers, clients=10,
                                      requests=300)  # fmt: skip
                for clients in (1, 10):
                    samples: dict[str, dict[str, list[float]]] = {
                        t: {"p50": [], "p99": [], "rps": [], "cpu": [], "errors": []}
                        for t in targets
                    }
                    for _ in range(rounds):
                        for target, (port, headers, pid) in targets.items():
                            one = await go.sample_round(port, headers, pid, path, body, clients,
                                                        requests)  # fmt: skip
                            for key, value in one.items():
                                samples[target][key].append(value)
                    med = {t: {k: go._median(v) for k, v in s.items()} for t, s in samples.items()}
                    direct = med["direct"]["p50"]
                    fwd_added = med["forwarder"]["p50"] - direct
                    result: dict[str, object] = {"samples": samples, "median": med}
                    line = (
                        f"{mode} c={clients}: forwarder added {fwd_added:.3f} ms, "
                        f"p99 {med['forwarder']['p99']:.2f} ms, "
                        f"CPU {med['forwarder']['cpu']:.3f} ms, {med['forwarder']['rps']:.0f} req/s"
                    )
                    for name in sources:
                        m = med[name]
                        added = m["p50"] - direct
                        ratios = {
                            "added_p50": added / fwd_added if fwd_added > 0 else float("nan"),
                            "cpu": m["cpu"] / med["forwarder"]["cpu"],
                            "rps": m["rps"] / med["forwarder"]["rps"],
                        }
                        result[name] = ratios
                        line += (
                            f" | {name}: added {added:.3f} ms ({ratios['added_p50']:.2f}x), "
                            f"p99 {m['p99']:.2f} ms, "
                            f"CPU {m['cpu']:.3f} ms ({ratios['cpu']:.2f}x), "
                            f"{m['rps']:.0f} req/s ({ratios['rps'] * 100:.0f}%)"
                        )
                    print(line, flush=True)
                    out[f"{mode}_c{clients}"] = result
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", required=True, help="the baseline build's src/ folder")
    parser.add_argument("--after", required=True, help="the changed build's src/ folder")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=2000, help="per target and round")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    out = asyncio.run(
        compare({"before": args.before, "after": args.after}, args.rounds, args.requests)
    )
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
