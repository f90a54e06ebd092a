"""The batched audit writer: requests hand records to a queue and never wait for SQL.

``submit`` is a non-blocking append to a bounded queue. One background thread takes records
off it and appends them in batches, one transaction per batch, whenever ``batch_size`` records
are waiting or ``flush_interval_s`` has passed since the oldest unwritten one arrived.

``submit`` wakes the writer only when it has to: when the writer sleeps with nothing to write
(the first record of a batch starts its interval), when a batch is full, or for a flush or a
stop. Records arriving within an interval wait for it without waking the thread, so a busy
gateway pays one thread switch per batch, not one per request.

What can be lost, and how it shows:

* **Clean shutdown** (``close()``): nothing; the queue is drained before the thread exits.
* **Crash** (SIGKILL, OOM kill, power loss): the records still in memory, i.e. those submitted
  in roughly the last ``flush_interval_s`` plus any batch being written. Committed batches are
  whole; the chain stays verifiable.
* **Queue full** (the database is slower than the traffic for long enough to fill
  ``queue_size``): the record is dropped rather than blocking the event loop, ``submit`` returns
  ``False``, :attr:`AuditWriter.dropped` counts it, and a ``gap`` record stating how many were
  dropped is written into the chain at that point. Never silent.
* **Database down**: the batch is retried with backoff (records queue up meanwhile, see above).
  Records the database rejects outright are counted in :attr:`AuditWriter.failed` and logged
  (without content).
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.exc import DataError, IntegrityError

from wardgate.config import AuditConfig
from wardgate.store.auditlog import AuditRecord, append_records, gap_record

log = logging.getLogger(__name__)

_MAX_BACKOFF_S = 5.0
#: Failures a particular record causes (bad value, constraint); anything else is treated as
#: the database being unavailable and retried.
_RECORD_ERRORS = (IntegrityError, DataError, TypeError, ValueError, OverflowError)


@dataclass(eq=False)
class _Marker:
    """A flush or stop request travelling through the queue behind the records before it."""

    stop: bool = False
    done: threading.Event = field(default_factory=threading.Event)


class AuditWriter:
    """Owns the queue and the writer thread for one engine. Thread-safe."""

    def __init__(
        self, engine: Engine, config: AuditConfig, *, retry_backoff_s: float = 0.2
    ) -> None:
        self._engine = engine
        self._config = config
        self._backoff = retry_backoff_s
        #: Records and markers in submission order; ``deque`` appends and pops are atomic, so
        #: producers never take the writer's lock to queue a record.
        self._items: deque[AuditRecord | _Marker] = deque()
        self._wake = threading.Event()
        #: True while the writer sleeps with nothing queued: the next record must wake it.
        self._idle = False
        #: A flush or stop marker is queued: the writer handles it at once.
        self._marker_queued = False
        self._lock = threading.Lock()
        self._submitted = 0
        self._written = 0
        self._dropped = 0
        self._failed = 0
        self._gaps_recorded = 0
        self._closed = False
        self._give_up_at: float | None = None
        self._thread: threading.Thread | None = None
        self._atexit: Callable[[], None] | None = None

    # -- producer side -------------------------------------------------------------------

    def submit(self, record: AuditRecord) -> bool:
        """Queue a record without blocking; ``False`` (and counted) if it had to be dropped."""
        if self._closed:
            with self._lock:
                self._dropped += 1
            return False
        items = self._items
        if len(items) >= self._config.queue_size:
            with self._lock:
                self._dropped += 1
                dropped = self._dropped
            if dropped & (dropped - 1) == 0:  # 1, 2, 4, 8...: visible but not a log flood
                log.error("audit queue full: %d record(s) dropped so far", dropped)
            return False
        # Count before the append: the writer may commit the record before this thread runs
        # again, and pending() must never go negative.
        with self._lock:
            self._submitted += 1
        items.append(record)
        # The writer publishes ``_idle`` before its last look at the queue, so a record is
        # never left behind a sleeping writer; a set event needs no second set.
        wake = self._wake
        if (self._idle or len(items) >= self._config.batch_size) and not wake.is_set():
            wake.set()
        return True

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread (idempotent). Records submitted earlier are kept."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="wardgate-audit", daemon=True)
        self._thread.start()
        # A process that exits without calling close() still drains (not on SIGKILL).
        ref = weakref.ref(self)

        def _close_at_exit() -> None:
            writer = ref()
            if writer is not None:
                writer.close()

        self._atexit = _close_at_exit
        atexit.register(_close_at_exit)

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Block until everything submitted before this call is committed (or ``timeout``)."""
        if self._thread is None or not self._thread.is_alive():
            return self.pending() == 0
        marker = _Marker()
        self._put_marker(marker)
        return marker.done.wait(timeout)

    def close(self, timeout: float = 10.0) -> bool:
        """Stop accepting records, write everything queued, stop the thread.

        Returns ``True`` when every accepted record was written; after ``timeout`` seconds
        (e.g. the database is down) it gives up, logs how many were lost, and returns ``False``.
        """
        if self._atexit is not None:
            atexit.unregister(self._atexit)
            self._atexit = None
        self._closed = True
        failed_before = self._failed
        thread = self._thread
        if thread is None or not thread.is_alive():
            return self.pending() == 0
        self._give_up_at = time.monotonic() + timeout
        self._put_marker(_Marker(stop=True))
        thread.join(timeout + 1.0)
        lost = self.pending() + self._failed - failed_before
        if lost:
            log.error("audit writer closed with %d record(s) unwritten", lost)
        return lost == 0

    # -- observability -------------------------------------------------------------------

    def pending(self) -> int:
        """Records accepted but not yet committed (or given up on)."""
        with self._lock:
            return self._submitted - self._written - self._failed

    @property
    def submitted(self) -> int:
        return self._submitted

    @property
    def written(self) -> int:
        return self._written

    @property
    def dropped(self) -> int:
        """Records refused because the queue was full or the writer closed."""
        return self._dropped

    @property
    def failed(self) -> int:
        """Records accepted but never written (rejected by the database, or lost at close)."""
        return self._failed

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "submitted": self._submitted,
                "written": self._written,
                "dropped": self._dropped,
                "failed": self._failed,
                "pending": self._submitted - self._written - self._failed,
            }

    # -- writer thread -------------------------------------------------------------------

    def _put_marker(self, marker: _Marker) -> None:
        self._items.append(marker)
        self._marker_queued = True
        self._wake.set()

    def _run(self) -> None:
        size, interval = self._config.batch_size, self._config.flush_interval_s
        items, wake = self._items, self._wake
        deadline = 0.0
        while True:
            # Clear, then look at the queue, then sleep: a wake-up that lands in between is
            # seen by the look, never lost.
            wake.clear()
            if not items:
                self._idle = True
                if not items:  # re-checked after publishing _idle (see submit)
                    wake.wait()
                self._idle = False
                deadline = time.monotonic() + interval  # the first record's interval starts
                continue
            now = time.monotonic()
            if self._marker_queued or now >= deadline:
                self._marker_queued = False
                if self._take(len(items), size):
                    return
            elif len(items) >= size:
                self._take(len(items) // size * size, size)  # the rest waits for its interval
            else:
                wake.wait(deadline - now)
                continue
            deadline = time.monotonic() + interval

    def _take(self, count: int, size: int) -> bool:
        """Write the first ``count`` queued items in order, in batches of at most ``size``,
        settling flush markers after the records before them. True when a stop marker came
        (everything left is then written and the thread must end)."""
        items = self._items
        batch: list[AuditRecord] = []
        for _ in range(count):
            item = items.popleft()
            if isinstance(item, AuditRecord):
                batch.append(item)
                if len(batch) >= size:
                    self._write(batch)
                    batch = []
                continue
            self._write(batch)
            batch = []
            if item.stop:
                self._stop(item, size)
                return True
            item.done.set()
        self._write(batch)
        return False

    def _stop(self, item: _Marker, size: int) -> None:
        rest, markers = self._drain()
        for start in range(0, len(rest), size):
            self._write(rest[start : start + size])
        self._write([])  # drops since the last batch still get their gap record
        with self._lock:
            unwritten = self._submitted - self._written - self._failed
            self._failed += max(0, unwritten)  # late submits racing close(); gone
        for marker in (*markers, item):
            marker.done.set()

    def _drain(self) -> tuple[list[AuditRecord], list[_Marker]]:
        records: list[AuditRecord] = []
        markers: list[_Marker] = []
        items = self._items
        while items:
            item = items.popleft()
            if isinstance(item, AuditRecord):
                records.append(item)
            else:
                markers.append(item)
        return records, markers

    def _write(self, batch: list[AuditRecord]) -> None:
        dropped = self._dropped
        gap = dropped - self._gaps_recorded
        if not batch and gap <= 0:
            return
        records = [gap_record(gap), *batch] if gap > 0 else batch
        attempt = 0
        while True:
            try:
                append_records(self._engine, records, self._config.store_prompts)
            except _RECORD_ERRORS:
                # Caused by a record, not the database: retrying the same batch would stall
                # the log forever, so find and skip the bad record(s).
                self._write_one_by_one(batch)
                return
            except Exception as exc:  # the thread must outlive any failure; retry until close
                if self._gave_up():
                    with self._lock:
                        self._failed += len(batch)
                    log.error("audit: gave up on %d record(s): %s", len(batch), type(exc).__name__)
                    return
                log.warning("audit write failed (%s); retrying", type(exc).__name__)
                time.sleep(min(self._backoff * 2**attempt, _MAX_BACKOFF_S))
                attempt += 1
                continue
            with self._lock:
                self._written += len(batch)
            self._gaps_recorded = dropped if gap > 0 else self._gaps_recorded
            return

    def _write_one_by_one(self, batch: list[AuditRecord]) -> None:
        for record in batch:
            try:
                append_records(self._engine, [record], self._config.store_prompts)
            except Exception as exc:
                with self._lock:
                    self._failed += 1
                log.error("audit: record rejected by the database: %s", type(exc).__name__)
            else:
                with self._lock:
                    self._written += 1

    def _gave_up(self) -> bool:
        return self._give_up_at is not None and time.monotonic() >= self._give_up_at
