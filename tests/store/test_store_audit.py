"""The audit log against real SQLite and PostgreSQL: batched writing, content policy, and a
hash chain that reports the first altered, inserted or missing record after SQL tampering."""

from __future__ import annotations

import hashlib
import os
import threading
import time

import pytest
import sqlalchemy as sa

from wardgate.config import AuditConfig
from wardgate.store import auditlog
from wardgate.store.audit import (
    AuditRecord,
    AuditWriter,
    append_records,
    export_jsonl,
    record_hash,
    tail,
    verify_chain,
    verify_jsonl,
)
from wardgate.store.db import create_engine_for, upgrade_database, write_connection


def _record(i: int, **kwargs) -> AuditRecord:
    return AuditRecord(
        request_id=f"req-{i}",
        key_id="key_0123456789abcdef",
        user="u@example.com",
        client_ip="127.0.0.1",
        model_asked="smollm2",
        backend_used="smollm2",
        prompt_tokens=i,
        completion_tokens=2 * i,
        latency_ms=i / 7,
        status=200,
        stream=bool(i % 2),
        guard_decisions=[{"guard": "pii", "action": "allow", "score": 0.25}],
        routing={"chosen": "smollm2", "attempts": [{"model": "smollm2", "ok": True}]},
        prompt=f"prompt {i}",
        completion=f"answer {i}",
        **kwargs,
    )


def _rows(engine, where: str = "1=1") -> list[dict]:
    table = auditlog.audit_log
    query = sa.select(table).where(sa.text(where)).order_by(table.c.seq)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def _sql(engine, statement: str, **params) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(statement), params)


def _fill(engine, n: int = 20) -> None:
    append_records(engine, [_record(i) for i in range(n)], "full")


# -- writing ---------------------------------------------------------------------------


def test_writer_writes_every_record_once_in_order(engine) -> None:
    writer = AuditWriter(engine, AuditConfig(batch_size=64, flush_interval_s=0.05))
    writer.start()
    assert all(writer.submit(_record(i)) for i in range(500))
    assert writer.close() is True
    assert writer.stats() == {
        "submitted": 500,
        "written": 500,
        "dropped": 0,
        "failed": 0,
        "pending": 0,
    }
    rows = _rows(engine)
    assert [r["seq"] for r in rows] == list(range(1, 501))
    assert [r["request_id"] for r in rows] == [f"req-{i}" for i in range(500)]
    report = verify_chain(engine)
    assert report.ok and report.checked == 500 and report.last_seq == 500
    # Submitting after close is refused and counted, never silently lost.
    assert writer.submit(_record(0)) is False and writer.dropped == 1


def test_fields_round_trip_exactly(engine) -> None:
    record = _record(3, error_code="guard_blocked")
    append_records(engine, [record], "full")
    [row] = tail(engine, 1)
    assert row["ts"].endswith("Z") and row["seq"] == 1
    assert row["guard_decisions"] == record.guard_decisions and row["routing"] == record.routing
    assert row["latency_ms"] == round(3 / 7, 3) and row["stream"] is True
    assert row["error_code"] == "guard_blocked" and row["prompt"] == "prompt 3"
    assert record_hash(row) == row["hash"]


@pytest.mark.parametrize("mode", ["none", "sha256", "full"])
def test_store_prompts_policy(sqlite_url, mode) -> None:
    upgrade_database(sqlite_url)
    engine = create_engine_for(sqlite_url)
    writer = AuditWriter(engine, AuditConfig(store_prompts=mode))
    writer.start()
    writer.submit(_record(1))
    writer.close()
    [row] = _rows(engine)
    expected = {
        "none": (None, None),
        "sha256": tuple(hashlib.sha256(t.encode()).hexdigest() for t in ("prompt 1", "answer 1")),
        "full": ("prompt 1", "answer 1"),
    }[mode]
    assert (row["prompt"], row["completion"]) == expected and row["content_mode"] == mode
    assert verify_chain(engine).ok
    engine.dispose()


def test_batch_size_and_interval_trigger_writes(sqlite_url) -> None:
    upgrade_database(sqlite_url)
    engine = create_engine_for(sqlite_url)
    writer = AuditWriter(engine, AuditConfig(batch_size=10, flush_interval_s=30))
    writer.start()
    for i in range(25):
        writer.submit(_record(i))
    deadline = time.monotonic() + 5
    while writer.written < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    # Two full batches went out; the remaining five wait for the (long) interval.
    assert writer.written == 20 and writer.pending() == 5 and len(_rows(engine)) == 20
    assert writer.flush() is True and len(_rows(engine)) == 25
    writer.close()

    fast = AuditWriter(engine, AuditConfig(batch_size=1000, flush_interval_s=0.05))
    fast.start()
    fast.submit(_record(99))
    deadline = time.monotonic() + 5
    while fast.written < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fast.written == 1 and len(_rows(engine)) == 26  # written by the interval alone
    fast.close()
    assert verify_chain(engine).ok
    engine.dispose()


def test_records_within_an_interval_wake_the_writer_once(engine) -> None:
    """The first record wakes a sleeping writer; the rest of its batch waits for the interval
    without a thread switch per record (the gateway's event loop pays for each wake-up)."""
    writer = AuditWriter(engine, AuditConfig(batch_size=1000, flush_interval_s=30))
    wakes = []
    set_event = writer._wake.set
    writer._wake.set = lambda: (wakes.append(1), set_event())[1]  # type: ignore[method-assign]
    writer.start()
    deadline = time.monotonic() + 5
    while not writer._idle and time.monotonic() < deadline:
        time.sleep(0.005)
    assert writer._idle, "the writer never went to sleep"
    for i in range(200):
        assert writer.submit(_record(i))
    assert len(wakes) == 1 and writer.written == 0
    assert writer.flush() is True and writer.written == 200
    assert [r["request_id"] for r in _rows(engine)] == [f"req-{i}" for i in range(200)]
    # A full batch wakes it at once, interval or not.
    small = AuditWriter(engine, AuditConfig(batch_size=50, flush_interval_s=30))
    small.start()
    for i in range(120):
        small.submit(_record(1000 + i))
    deadline = time.monotonic() + 5
    while small.written < 100 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert small.written == 100 and small.pending() == 20
    assert small.close() is True and small.written == 120
    writer.close()
    assert verify_chain(engine).ok


def test_full_queue_drops_are_counted_and_recorded_in_the_chain(engine) -> None:
    writer = AuditWriter(engine, AuditConfig(queue_size=5, batch_size=100))
    results = [writer.submit(_record(i)) for i in range(8)]  # thread not started yet
    assert results == [True] * 5 + [False] * 3 and writer.dropped == 3
    writer.start()
    assert writer.close() is True
    rows = _rows(engine)
    assert rows[0]["kind"] == "gap" and rows[0]["error_code"] == "audit_queue_full"
    assert rows[0]["routing"] == {"dropped": 3}
    assert [r["request_id"] for r in rows[1:]] == [f"req-{i}" for i in range(5)]
    assert verify_chain(engine).ok


def test_submit_does_not_wait_for_a_locked_database(sqlite_url) -> None:
    upgrade_database(sqlite_url)
    engine = create_engine_for(sqlite_url)
    writer = AuditWriter(engine, AuditConfig(batch_size=10, flush_interval_s=0.01))
    writer.start()
    blocker = create_engine_for(sqlite_url)
    with write_connection(blocker) as conn:
        transaction = conn.begin()  # BEGIN IMMEDIATE: "another process" holds the write lock
        started = time.perf_counter()
        for i in range(2000):
            assert writer.submit(_record(i))
        elapsed = time.perf_counter() - started
        time.sleep(0.2)
        assert writer.written == 0
        transaction.commit()
    assert elapsed < 1.0, f"2000 submits took {elapsed:.3f}s while the database was locked"
    assert writer.close() is True and len(_rows(engine)) == 2000
    assert verify_chain(engine).ok
    blocker.dispose()
    engine.dispose()


def test_writer_retries_until_the_tables_exist(tmp_path) -> None:
    """A transient database failure delays records; it does not lose them or kill the thread."""
    url = f"sqlite:///{tmp_path / 'late.db'}"
    engine = create_engine_for(url)
    writer = AuditWriter(engine, AuditConfig(flush_interval_s=0.01), retry_backoff_s=0.02)
    writer.start()
    for i in range(3):
        writer.submit(_record(i))
    time.sleep(0.2)
    assert writer.written == 0 and writer.pending() == 3
    upgrade_database(url)
    assert writer.flush(timeout=10) is True and writer.written == 3
    writer.close()
    assert verify_chain(engine).ok
    engine.dispose()


def test_close_gives_up_after_its_timeout(tmp_path) -> None:
    engine = create_engine_for(f"sqlite:///{tmp_path / 'never.db'}")  # never migrated
    writer = AuditWriter(engine, AuditConfig(flush_interval_s=0.01), retry_backoff_s=0.02)
    writer.start()
    writer.submit(_record(1))
    started = time.monotonic()
    assert writer.close(timeout=0.5) is False
    assert time.monotonic() - started < 3 and writer.failed == 1 and writer.pending() == 0
    engine.dispose()


def test_chain_continues_across_restarts_and_threads(engine, db_url) -> None:
    first = AuditWriter(engine, AuditConfig())
    first.start()
    for i in range(10):
        first.submit(_record(i))
    first.close()
    # A "restarted" gateway: new engine, new writer, same database; plus concurrent writers.
    engines = [create_engine_for(db_url) for _ in range(3)]
    writers = [AuditWriter(e, AuditConfig(batch_size=7, flush_interval_s=0.005)) for e in engines]
    for w in writers:
        w.start()

    def produce(w: AuditWriter, tag: int) -> None:
        for i in range(150):
            w.submit(_record(1000 * tag + i))

    threads = [threading.Thread(target=produce, args=(w, n)) for n, w in enumerate(writers, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(w.close() for w in writers)
    report = verify_chain(engine)
    assert report.ok and report.checked == 460, report
    for e in engines:
        e.dispose()


# -- tampering -------------------------------------------------------------------------


def test_altered_record_is_reported(engine) -> None:
    _fill(engine)
    _sql(engine, "UPDATE wardgate_audit_log SET model_asked = 'other' WHERE seq = 7")
    report = verify_chain(engine)
    assert (report.ok, report.kind, report.first_bad_seq, report.checked) == (
        False,
        "altered",
        7,
        6,
    )


def test_altered_and_rehashed_record_is_reported(engine) -> None:
    """An attacker who recomputes the edited record's own hash still breaks the next link."""
    _fill(engine)
    [row] = _rows(engine, "seq = 7")
    original_hash = row["hash"]
    row["status"] = 500
    _sql(
        engine,
        "UPDATE wardgate_audit_log SET status = 500, hash = :h WHERE seq = 7",
        h=record_hash(row),
    )
    report = verify_chain(engine)
    assert (report.kind, report.first_bad_seq) == ("altered", 7)
    # Rehashing the last record instead is caught by the chain head.
    _sql(
        engine,
        "UPDATE wardgate_audit_log SET status = 200, hash = :h WHERE seq = 7",
        h=original_hash,
    )
    assert verify_chain(engine).ok
    [last] = _rows(engine, "seq = 20")
    last["status"] = 418
    _sql(
        engine,
        "UPDATE wardgate_audit_log SET status = 418, hash = :h WHERE seq = 20",
        h=record_hash(last),
    )
    report = verify_chain(engine)
    assert (report.kind, report.first_bad_seq) == ("altered", 20)


def test_deleted_record_is_reported_missing(engine) -> None:
    _fill(engine)
    _sql(engine, "DELETE FROM wardgate_audit_log WHERE seq = 5")
    report = verify_chain(engine)
    assert (report.ok, report.kind, report.first_bad_seq) == (False, "missing", 5)
    assert "record 5 is missing" in report.message


def test_deleted_and_renumbered_record_is_reported_missing(engine) -> None:
    _fill(engine)
    _sql(engine, "DELETE FROM wardgate_audit_log WHERE seq = 5")
    _sql(engine, "UPDATE wardgate_audit_log SET seq = seq + 1000000 WHERE seq > 5")
    _sql(engine, "UPDATE wardgate_audit_log SET seq = seq - 1000001 WHERE seq > 1000000")
    _sql(engine, "UPDATE wardgate_audit_head SET seq = seq - 1")
    report = verify_chain(engine)
    assert (report.kind, report.first_bad_seq) == ("missing", 5), report


def test_truncated_tail_is_reported_missing(engine) -> None:
    _fill(engine)
    _sql(engine, "DELETE FROM wardgate_audit_log WHERE seq > 17")
    report = verify_chain(engine)
    assert (report.kind, report.first_bad_seq, report.checked) == ("missing", 18, 17)


def _forged(engine, seq: int, prev_seq: int) -> dict:
    [template] = _rows(engine, "seq = 1")
    [prev] = _rows(engine, f"seq = {prev_seq}")
    forged = {**template, "seq": seq, "request_id": "forged", "prev_hash": prev["hash"]}
    forged["hash"] = record_hash(forged)
    return forged


def _insert(engine, row: dict) -> None:
    with engine.begin() as conn:
        conn.execute(sa.insert(auditlog.audit_log).values(**row))


def test_record_appended_behind_the_head_is_reported_inserted(engine) -> None:
    _fill(engine)
    _insert(engine, _forged(engine, 21, 20))  # perfectly linked and hashed
    report = verify_chain(engine)
    assert (report.kind, report.first_bad_seq) == ("inserted", 21), report


@pytest.mark.parametrize("rehashed", [True, False])
def test_record_inserted_in_the_middle_is_reported_inserted(engine, rehashed) -> None:
    _fill(engine)
    forged = _forged(engine, 5, 4)
    if not rehashed:
        forged["hash"] = "f" * 64
    _sql(engine, "UPDATE wardgate_audit_log SET seq = seq + 1000000 WHERE seq >= 5")
    _sql(engine, "UPDATE wardgate_audit_log SET seq = seq - 999999 WHERE seq > 1000000")
    _sql(engine, "UPDATE wardgate_audit_head SET seq = seq + 1")
    _insert(engine, forged)
    report = verify_chain(engine)
    assert (report.kind, report.first_bad_seq) == ("inserted", 5), report


def test_missing_head_row_fails_closed(engine) -> None:
    _fill(engine, 3)
    _sql(engine, "DELETE FROM wardgate_audit_head")
    assert verify_chain(engine).ok is False
    with pytest.raises(auditlog.AuditChainError):
        append_records(engine, [_record(1)])


def test_empty_chain_verifies(engine) -> None:
    report = verify_chain(engine)
    assert report.ok and report.checked == 0 and report.last_seq == 0


# -- export ----------------------------------------------------------------------------


def test_export_is_complete_verifiable_and_private(engine, tmp_path) -> None:
    _fill(engine, 30)
    target = tmp_path / "out" / "audit.jsonl"
    result = export_jsonl(engine, target)
    assert result.records == 30 and result.last_seq == 30
    lines = target.read_text().splitlines()
    assert len(lines) == 30 and '"request_id":"req-0"' in lines[0]
    assert result.last_hash == _rows(engine, "seq = 30")[0]["hash"]
    assert verify_jsonl(target).ok
    assert os.stat(target).st_mode & 0o077 == 0
    assert [p.name for p in target.parent.iterdir()] == ["audit.jsonl"]
    # The export carries the chain: editing one line is detected offline.
    lines[9] = lines[9].replace('"status":200', '"status":201')
    target.write_text("\n".join(lines) + "\n")
    report = verify_jsonl(target)
    assert (report.kind, report.first_bad_seq) == ("altered", 10)


def test_failed_export_leaves_no_partial_file(engine, tmp_path, monkeypatch) -> None:
    _fill(engine, 30)
    target = tmp_path / "exports" / "audit.jsonl"
    target.parent.mkdir()
    target.write_text("previous export\n")
    calls = {"n": 0}
    real = auditlog.export_record

    def failing(row):
        calls["n"] += 1
        if calls["n"] == 15:
            raise OSError("disk full")
        return real(row)

    monkeypatch.setattr(auditlog, "export_record", failing)
    with pytest.raises(OSError, match="disk full"):
        export_jsonl(engine, target)
    assert target.read_text() == "previous export\n"
    assert [p.name for p in target.parent.iterdir()] == ["audit.jsonl"]


def test_full_rewrite_is_caught_only_by_a_pinned_hash(engine) -> None:
    """Documents the limit of an unkeyed chain, and the remedy: pin a hash outside the DB."""
    _fill(engine)
    pinned = (12, _rows(engine, "seq = 12")[0]["hash"])
    rows = _rows(engine)
    prev = rows[3]["hash"]
    for row in rows[4:]:  # rewrite record 5 and recompute everything after it, head included
        if row["seq"] == 5:
            row["status"] = 204
        row["prev_hash"] = prev
        row["hash"] = prev = record_hash(row)
        _sql(
            engine,
            "UPDATE wardgate_audit_log SET status = :s, prev_hash = :p, hash = :h WHERE seq = :q",
            s=row["status"],
            p=row["prev_hash"],
            h=row["hash"],
            q=row["seq"],
        )
    _sql(engine, "UPDATE wardgate_audit_head SET hash = :h", h=prev)
    assert verify_chain(engine).ok  # the chain alone cannot tell
    report = verify_chain(engine, anchor=pinned)
    assert (report.ok, report.kind, report.first_bad_seq) == (False, "altered", 12)
    assert verify_chain(engine, anchor=(25, "0" * 64)).kind == "missing"


def test_concurrent_producers_on_a_tiny_queue_account_for_every_record(engine) -> None:
    writer = AuditWriter(engine, AuditConfig(queue_size=20, batch_size=8, flush_interval_s=0.001))
    writer.start()
    accepted = [0] * 4

    def produce(n: int) -> None:
        for i in range(1500):
            accepted[n] += writer.submit(_record(n * 10_000 + i))

    threads = [threading.Thread(target=produce, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert writer.close() is True
    rows = _rows(engine)
    requests = [r for r in rows if r["kind"] == "request"]
    gaps = [r["routing"]["dropped"] for r in rows if r["kind"] == "gap"]
    assert len(requests) == sum(accepted) == writer.written
    assert sum(accepted) + writer.dropped == 6000
    assert writer.dropped > 0, "the queue never filled; the test proved nothing"
    assert sum(gaps) == writer.dropped  # every drop is in the chain
    assert verify_chain(engine).ok


def test_a_bad_record_is_skipped_not_retried_forever(engine) -> None:
    writer = AuditWriter(engine, AuditConfig(store_prompts="full", batch_size=10))
    writer.start()
    writer.submit(_record(1))
    writer.submit(AuditRecord(status="oops"))  # type: ignore[arg-type]
    writer.submit(_record(3, error_code="nul\x00inside"))
    assert writer.close(timeout=5) is False  # one record could not be written...
    assert writer.failed == 1 and writer.written == 2  # ...and only that one
    rows = _rows(engine)
    assert [r["request_id"] for r in rows] == ["req-1", "req-3"]
    assert rows[1]["error_code"] == "nul\ufffdinside"
    assert verify_chain(engine).ok


@pytest.mark.parametrize(
    "text",
    ["plain ascii", "nul\x00inside\x00", "", "é and 日本", "lone \ud800 surrogate", "\x00é\udfff"],
)
def test_text_cleaning_is_the_same_on_the_ascii_fast_path(text: str) -> None:
    """ASCII text skips the UTF-8 round trip; the result is what the round trip gives."""
    slow = text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")
    assert auditlog._clean(text) == slow
