"""Real OS processes writing the audit log: several gateways sharing one database, and a
gateway killed with SIGKILL mid-stream."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

import wardgate
from wardgate.config import AuditConfig
from wardgate.store.audit import AuditRecord, AuditWriter, verify_chain
from wardgate.store.tables import audit_log

CHILD = Path(__file__).with_name("audit_child.py")


def _spawn(url: str, count: int, tag: str, rate: float, interval: float, batch: int):
    env = dict(os.environ)
    src = str(Path(wardgate.__file__).parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, str(CHILD), url, str(count), tag, str(rate), str(interval), str(batch)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def _ready(proc: subprocess.Popen) -> None:
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"


def _request_ids(engine, tag: str) -> list[str]:
    query = (
        sa.select(audit_log.c.request_id)
        .where(audit_log.c.model_asked == tag)
        .order_by(audit_log.c.seq)
    )
    with engine.connect() as conn:
        return list(conn.execute(query).scalars())


@pytest.mark.slow
def test_two_gateway_processes_share_one_verifiable_chain(engine) -> None:
    url = engine.url.render_as_string(hide_password=False)
    procs = [_spawn(url, 1500, tag, 3000, 0.01, 50) for tag in ("a", "b")]
    for proc in procs:
        _ready(proc)
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0 and out.rstrip().endswith("done")
    report = verify_chain(engine)
    assert report.ok and report.checked == 3000, report
    for tag in ("a", "b"):  # each process's records are all there, in its own order
        assert _request_ids(engine, tag) == [f"{tag}-{i}" for i in range(1500)]
    with engine.connect() as conn:
        tags = list(conn.execute(sa.select(audit_log.c.model_asked).order_by(audit_log.c.seq)))
    switches = sum(1 for x, y in itertools.pairwise(tags) if x != y)
    assert switches >= 3, "the two processes never wrote concurrently; the test proved nothing"


@pytest.mark.slow
@pytest.mark.parametrize("interval", [0.1])
def test_sigkill_loses_at_most_the_unflushed_interval(engine, interval) -> None:
    rate = 1000.0
    proc = _spawn(
        engine.url.render_as_string(hide_password=False), 10**6, "k", rate, interval, 10_000
    )
    _ready(proc)
    assert proc.stdout is not None
    submitted = written = 0
    while submitted < 1500:
        submitted, written = map(int, proc.stdout.readline().split())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL

    ids = _request_ids(engine, "k")
    # Whole batches only, in order, and nothing that had been committed is missing...
    assert ids == [f"k-{i}" for i in range(len(ids))]
    assert len(ids) >= written
    # ...and the loss is bounded by what the interval lets pile up (generous slack for a
    # loaded machine: one second of traffic, ten intervals' worth).
    lost = submitted - len(ids)
    assert lost <= rate * 1.0, f"lost {lost} records"
    print(f"\nSIGKILL at {submitted} submitted: {len(ids)} committed, lost {max(lost, 0)}")

    report = verify_chain(engine)
    assert report.ok and report.checked == len(ids)
    # The next gateway process continues the same chain.
    writer = AuditWriter(engine, AuditConfig())
    writer.start()
    for i in range(5):
        writer.submit(AuditRecord(request_id=f"after-{i}"))
    assert writer.close()
    report = verify_chain(engine)
    assert report.ok and report.checked == len(ids) + 5
