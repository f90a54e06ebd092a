"""Persistence: API keys and the tamper-evident audit log, in SQLite or PostgreSQL.

See ``docs/keys-and-audit.md``. Everything the rest of Wardgate needs is re-exported here.
"""

from __future__ import annotations

from wardgate.store.audit import (
    AuditRecord,
    AuditWriter,
    ChainReport,
    export_jsonl,
    verify_chain,
)
from wardgate.store.db import create_engine_for, open_database, upgrade_database
from wardgate.store.keys import ApiKey, KeyNotFound, KeyStore
from wardgate.store.secret import load_or_create_secret

__all__ = [
    "ApiKey",
    "AuditRecord",
    "AuditWriter",
    "ChainReport",
    "KeyNotFound",
    "KeyStore",
    "create_engine_for",
    "export_jsonl",
    "load_or_create_secret",
    "open_database",
    "upgrade_database",
    "verify_chain",
]
