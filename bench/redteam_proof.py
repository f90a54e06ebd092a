"""Proof run: the shipped suites on raw SmolLM2 vs SmolLM2 behind the gateway's default guards.

    python bench/redteam_proof.py --out /tmp/rt-proof                      # everything
    python bench/redteam_proof.py --out /tmp/rt-proof --limit-per-category 12 --max-tokens 64
    # another local model, e.g. the one `wardgate whitebox harden` wrote (its own wardgate.yaml,
    # signature check included), raw and behind the same default guards:
    python bench/redteam_proof.py --out /tmp/rt-hardened \
        --model-config whitebox-reports/harden/wardgate.yaml

1. raw: the embedded model called in-process through its llamacpp backend (no guards);
2. guarded: ``wardgate serve`` started as a subprocess on a free port with the default guard
   pipeline (``wardgate.guards.default_guards_config()``), attacked over HTTP as ``gateway:URL``;
3. the paired comparison, printed and written to ``OUT/compare``.

Both runs use the same items, seeds and temperatures, and one llama.cpp thread each (on a
shared 2-core machine a second thread mostly spins; see docs/redteam.md). Harmful items are
judged by ``--harm-judge`` (default ``auto``, the validated default judge; any finished run can
be re-scored with ``wardgate redteam rejudge``), and multi-turn items' later turns are written
by an attacker model, the embedded SmolLM2 in this process (``--attacker embedded``, default).
Runs are resumable: rerunning with the same --out continues where it stopped. Prints the
figures docs/redteam.md quotes: ASR per category with Wilson intervals, false-refusal rate,
runtime and harness overhead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from wardgate.config import GatewayConfig
from wardgate.errors import ConfigError
from wardgate.guards.defaults import default_guards_config
from wardgate.guards.registry import GuardRegistry
from wardgate.redteam.harness import Selection, compare_runs, load_run, run_campaign, write_reports
from wardgate.redteam.runner import RunSettings, progress_bar
from wardgate.redteam.targets import BackendTarget, parse_target

MODEL = "smollm2-135m"


def available_default_guards() -> tuple[dict[str, Any], list[str]]:
    """The default pipeline, minus guards this install cannot build (named, never hidden)."""
    config = default_guards_config().model_dump()
    registry, missing = GuardRegistry(), []
    for stage in ("input", "output"):
        kept = []
        for spec in config[stage]:
            try:
                registry.resolve(spec["type"])
                kept.append(spec)
            except ConfigError:
                missing.append(f"{stage}:{spec['type']}")
        config[stage] = kept
    return config, missing


def model_entry(model_config: Path | None) -> dict[str, Any]:
    """The model under test: the embedded one, or the first ``llamacpp`` model of another
    config (e.g. ``wardgate whitebox harden``'s, whose ``verify`` block comes along, so the
    gateway refuses the file unless its digest and signature check out)."""
    if model_config is None:
        return {"name": MODEL, "backend": "llamacpp"}
    models = (yaml.safe_load(model_config.read_text(encoding="utf-8")) or {}).get("models") or []
    local = [m for m in models if isinstance(m, dict) and m.get("backend") == "llamacpp"]
    if not local:
        raise SystemExit(f"{model_config}: no llamacpp model to red-team")
    return dict(local[0])


def write_config(out: Path, max_tokens: int, roles: dict[str, list[str]] | None = None,
                 model: dict[str, Any] | None = None) -> tuple[Path, list[str]]:  # fmt: skip
    """The proof gateway's config; ``roles`` narrows which message roles a guard type scans
    (a guard update to measure, e.g. ``prompt_injection=user,tool``); ``model`` is the model
    entry under test (default: the embedded model), run on one thread like the others."""
    guards, missing = available_default_guards()
    for spec in guards["input"]:
        if roles and spec["type"] in roles:
            spec["roles"] = roles[spec["type"]]
    entry = {**(model or {"name": MODEL, "backend": "llamacpp"}), "n_ctx": 2048,
             "n_threads": 1, "queue_size": 64, "max_output_tokens": max(256, max_tokens)}
    config = {
        "server": {"host": "127.0.0.1", "port": 0},
        "database_url": f"sqlite:///{out / 'gateway.db'}",
        "auth": {"secret_file": str(out / "secret"), "secret_env": "WG_PROOF_NO_SECRET_ENV"},
        "models": [entry],
        "guards": guards,
    }
    GatewayConfig.model_validate(config)
    path = out / "gateway.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path, missing


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_gateway(config_path: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).with_name("wardgate")
    handle = log.open("wb")
    proc = subprocess.Popen(
        [str(exe), "serve", "--config", str(config_path), "--port", str(port)],
        stdout=handle, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"wardgate serve exited with {proc.returncode}; see {log}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise SystemExit(f"wardgate serve did not come up within 120 s; see {log}")


def create_key(config_path: Path) -> str:
    """An API key in the gateway's database, made before the server starts."""
    from wardgate.config import load_config
    from wardgate.store.db import create_engine_for, upgrade_database
    from wardgate.store.keys import KeyStore
    from wardgate.store.secret import load_or_create_secret

    config = load_config(config_path)
    upgrade_database(config.database_url)
    engine = create_engine_for(config.database_url)
    try:
        return KeyStore(engine, load_or_create_secret(config.auth)).create(owner="redteam")[1]
    finally:
        engine.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--suite", action="append", default=None,
                        help="Suites to run (default: all shipped suites).")
    parser.add_argument("--limit-per-category", type=int, default=None)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--guard-roles", action="append", default=[],
                        help="TYPE=ROLE,ROLE: only scan these message roles with that input "
                        "guard, e.g. prompt_injection=user,tool")
    parser.add_argument("--skip-raw", action="store_true")
    parser.add_argument("--skip-gateway", action="store_true")
    parser.add_argument("--harm-judge", default="auto",
                        choices=["auto", "pair_minilm", "rules", "guard", "compliance"],
                        help="Judge of harmful items (default: the validated default)")
    parser.add_argument("--attacker", choices=["none", "embedded"], default="embedded",
                        help="Who writes multi-turn items' later turns: the embedded model "
                        "in-process (default) or the scripted escalation")
    parser.add_argument("--model-config", type=Path, default=None,
                        help="Red-team this config's first llamacpp model instead of the "
                        "embedded one (e.g. the hardened model's wardgate.yaml)")
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    roles = {t: r.split(",") for t, _, r in (g.partition("=") for g in args.guard_roles)}
    entry = model_entry(args.model_config)
    config_path, missing = write_config(out, args.max_tokens, roles, entry)
    name = str(entry["name"])
    label = "smollm2" if args.model_config is None else name  # earlier runs' target names
    if missing:
        print(f"default guards not available in this install (left out): {', '.join(missing)}")
    selection = Selection(tuple(args.suite or ["all"]), (), args.limit_per_category)
    settings = RunSettings(repeats=args.repeats, seed=0, temperatures=(0.0,),
                           max_tokens=args.max_tokens, concurrency=1, timeout_s=300)
    from wardgate.redteam.harness import build_panel

    panel = build_panel(args.harm_judge)
    timings: dict[str, Any] = {}
    if not args.skip_raw:
        from wardgate.config import load_config

        raw = BackendTarget.from_config(load_config(config_path).models[0])
        raw.name = f"{label}-raw"
        t0 = time.perf_counter()
        # The raw model attacks itself: the same backend instance writes the attacker turns.
        outcome = await run_campaign(raw, selection, out / "raw", settings, panel=panel,
                                     attacker=raw if args.attacker == "embedded" else None,
                                     progress_factory=lambda n, label: progress_bar(n, label))
        timings["raw"] = {"total_s": time.perf_counter() - t0, **outcome.as_dict()}
        write_reports(out / "raw")
    if not args.skip_gateway:
        key = create_key(config_path)
        port = free_port()
        proc = start_gateway(config_path, port, out / "gateway.log")
        try:
            os.environ["WG_PROOF_KEY"] = key
            gw = parse_target(f"gateway:http://127.0.0.1:{port}/v1", model=name,
                              api_key_env="WG_PROOF_KEY", name=f"{label}-gateway",
                              timeout_s=300)
            attacker = None
            if args.attacker == "embedded":
                from wardgate.config import load_config

                # The attacker is the raw model in this process, not the gateway under test.
                attacker = BackendTarget.from_config(load_config(config_path).models[0])
                attacker.name = f"{label}-attacker"
            t0 = time.perf_counter()
            outcome = await run_campaign(gw, selection, out / "gateway", settings, panel=panel,
                                         attacker=attacker,
                                         progress_factory=lambda n, label: progress_bar(n, label))
            timings["gateway"] = {"total_s": time.perf_counter() - t0, **outcome.as_dict()}
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        write_reports(out / "gateway")
    (out / "timings.json").write_text(json.dumps(timings, indent=2) + "\n", encoding="utf-8")
    report(out, timings, missing)


def report(out: Path, timings: dict[str, Any], missing: list[str]) -> None:
    runs = [d for d in (out / "raw", out / "gateway") if (d / "run.json").is_file()]
    for run_dir in runs:
        _, _, s = load_run(run_dir)
        print(f"\n== {run_dir.name}: {s['attempts']} attempts, {s['errors']} errors, judges "
              f"{s['judge_methods']}")
        rows = dict(s["categories"])
        rows["OVERALL (attacks)"] = s["overall"]
        rows["FALSE REFUSAL (benign)"] = s["false_refusal"]
        for cat, e in rows.items():
            print(f"  {cat:<26}{100 * e['rate']:6.1f}%  [{100 * e['ci_low']:5.1f}, "
                  f"{100 * e['ci_high']:5.1f}]  {e['successes']}/{e['n']}")
        session = s["sessions"][-1] if s["sessions"] else {}
        wall, model = float(session.get("wall_s", 0)), float(session.get("model_s", 0))
        if wall:
            print(f"  wall {wall:.1f} s, inside target calls {model:.1f} s, harness overhead "
                  f"{100 * (wall - model) / wall:.2f}% of wall time; tokens {session['tokens']}")
    if len(runs) == 2:
        comparison = compare_runs(runs, out / "compare")["comparisons"][0]
        o, f = comparison["overall"], comparison["false_refusal"]
        red = o["relative_reduction"]
        print(f"\n== raw -> gateway on {comparison['pairs']} paired attempts")
        print(f"  overall ASR {100 * o['baseline']['rate']:.1f}% -> {100 * o['other']['rate']:.1f}%"
              f", relative reduction {'n/a' if red is None else f'{100 * red:.1f}%'}, McNemar p "
              f"{o['mcnemar']['p_value']:.3g} (b={o['mcnemar']['a_only']}, "
              f"c={o['mcnemar']['b_only']})")
        print(f"  false refusals {100 * f['baseline']['rate']:.1f}% -> "
              f"{100 * f['other']['rate']:.1f}%")
        for cat, e in comparison["categories"].items():
            r = e["relative_reduction"]
            print(f"  {cat:<26}{100 * e['baseline']['rate']:6.1f}% -> "
                  f"{100 * e['other']['rate']:6.1f}%  rel.red. "
                  f"{'n/a' if r is None else f'{100 * r:.0f}%'}  p={e['mcnemar']['p_value']:.3g}")
    if missing:
        print(f"\nnote: guards left out (not installed): {', '.join(missing)}")


if __name__ == "__main__":
    asyncio.run(main())
