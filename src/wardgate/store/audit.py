"""The tamper-evident audit log: one record per request, hash-chained, written off the hot path.

This module is the public face; the parts live beside it:

* :mod:`wardgate.store.chain` — canonical hashing and verification (no SQL),
* :mod:`wardgate.store.auditlog` — appending to, reading, verifying and exporting the SQL log,
* :mod:`wardgate.store.writer` — the batched background writer the gateway submits to.
"""

from __future__ import annotations

from wardgate.store.auditlog import (
    AuditChainError,
    AuditRecord,
    ExportResult,
    append_records,
    export_jsonl,
    read_since,
    tail,
    verify_chain,
    verify_jsonl,
)
from wardgate.store.chain import ChainReport, canonical_bytes, record_hash
from wardgate.store.writer import AuditWriter

__all__ = [
    "AuditChainError",
    "AuditRecord",
    "AuditWriter",
    "ChainReport",
    "ExportResult",
    "append_records",
    "canonical_bytes",
    "export_jsonl",
    "read_since",
    "record_hash",
    "tail",
    "verify_chain",
    "verify_jsonl",
]
