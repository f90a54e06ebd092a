"""A separate gateway-like process that submits audit records (used by the multi-process tests).

usage: audit_child.py URL COUNT TAG RATE FLUSH_INTERVAL BATCH_SIZE
Prints "<submitted> <written>" after every submit, so the parent knows how far it got
before killing it. RATE is records per second (0: as fast as possible).
"""

from __future__ import annotations

import sys
import time

from wardgate.config import AuditConfig
from wardgate.store.audit import AuditRecord, AuditWriter
from wardgate.store.db import create_engine_for


def main() -> None:
    url, count, tag, rate, interval, batch = sys.argv[1:7]
    engine = create_engine_for(url)
    writer = AuditWriter(
        engine, AuditConfig(flush_interval_s=float(interval), batch_size=int(batch))
    )
    writer.start()
    print("ready", flush=True)
    started = time.monotonic()
    for i in range(int(count)):
        writer.submit(AuditRecord(request_id=f"{tag}-{i}", model_asked=tag, prompt="p"))
        print(i + 1, writer.written, flush=True)
        if float(rate) > 0:
            lag = started + (i + 1) / float(rate) - time.monotonic()
            if lag > 0:
                time.sleep(lag)
    ok = writer.close()
    print("done" if ok else "lost", flush=True)
    engine.dispose()


if __name__ == "__main__":
    main()
