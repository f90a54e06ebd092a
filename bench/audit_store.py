"""Benchmark the persistence layer: audit submit cost, writer throughput, chain verification,
and API-key verification, on SQLite and (if reachable) PostgreSQL.

    .venv/bin/python bench/audit_store.py [--records 20000] [--pg URL]

Prints one line per figure. Uses a temporary SQLite file and a temporary PostgreSQL schema,
both removed afterwards.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from wardgate.config import AuditConfig
from wardgate.store.audit import AuditRecord, AuditWriter, export_jsonl, verify_chain
from wardgate.store.db import create_engine_for, upgrade_database
from wardgate.store.keys import KeyStore


def _record(i: int) -> AuditRecord:
    return AuditRecord(
        request_id=f"chatcmpl-{i:012d}",
        key_id="key_0123456789abcdef",
        user="user-42",
        client_ip="127.0.0.1",
        model_asked="smollm2-135m",
        backend_used="smollm2-135m",
        prompt_tokens=31,
        completion_tokens=64,
        latency_ms=812.345,
        guard_decisions=[{"guard": "pii", "action": "allow", "score": 0.02}],
        routing={
            "chosen": "smollm2-135m",
            "attempts": [{"model": "smollm2-135m", "outcome": "ok"}],
        },
        prompt='[{"role":"user","content":"hello"}]',
        completion="Hi! How can I help?",
    )


def bench(label: str, url: str, n: int, tmp: Path) -> None:
    upgrade_database(url)
    engine = create_engine_for(url)
    records = [_record(i) for i in range(n)]

    writer = AuditWriter(engine, AuditConfig(store_prompts="sha256"))
    writer.start()
    costs = []
    started = time.perf_counter()
    for record in records:
        t0 = time.perf_counter_ns()
        writer.submit(record)
        costs.append(time.perf_counter_ns() - t0)
    submitted = time.perf_counter() - started
    writer.close()
    total = time.perf_counter() - started
    costs.sort()
    print(
        f"{label}: submit() median {statistics.median(costs) / 1000:.1f} us, "
        f"p99 {costs[int(len(costs) * 0.99)] / 1000:.1f} us "
        f"({n} records queued in {submitted:.2f} s)"
    )
    print(
        f"{label}: writer committed {n} records in {total:.2f} s = {n / total:,.0f} records/s "
        "(batch 200, interval 0.2 s, store_prompts=sha256)"
    )

    t0 = time.perf_counter()
    report = verify_chain(engine)
    elapsed = time.perf_counter() - t0
    assert report.ok and report.checked == n, report
    print(f"{label}: verify_chain {n} records in {elapsed:.2f} s = {n / elapsed:,.0f} records/s")

    t0 = time.perf_counter()
    result = export_jsonl(engine, tmp / f"{label}.jsonl")
    elapsed = time.perf_counter() - t0
    print(f"{label}: export_jsonl {result.records} records in {elapsed:.2f} s")

    store = KeyStore(engine, secrets.token_bytes(32))
    _, raw = store.create("bench")
    store.verify(raw)
    lookups = 2000
    t0 = time.perf_counter()
    for _ in range(lookups):
        assert store.verify(raw) is not None
    elapsed = time.perf_counter() - t0
    print(f"{label}: KeyStore.verify {elapsed / lookups * 1e6:.0f} us per lookup (uncached)")
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench("sqlite", f"sqlite:///{tmp}/bench.db", args.records, Path(tmp))
        schema = f"wg_bench_{secrets.token_hex(4)}"
        admin = sa.create_engine(args.pg, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        except sa.exc.OperationalError:
            print("postgresql: not reachable, skipped")
            return
        try:
            sep = "&" if "?" in args.pg else "?"
            bench(
                "postgresql",
                f"{args.pg}{sep}options=-csearch_path%3D{schema}",
                args.records,
                Path(tmp),
            )
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
            admin.dispose()


if __name__ == "__main__":
    main()
