"""The audit hash chain: canonical record hashing and verification, independent of storage.

Record ``n`` stores ``prev_hash`` (the hash of record ``n-1``; 64 zeros for record 1) and
``hash = SHA-256(canonical JSON of all its fields, its sequence number and prev_hash)``.
Canonical JSON is sorted keys, no whitespace, UTF-8, timestamps as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``.
Anyone can recompute a hash from an export with nothing but this description.

:func:`verify_rows` walks records in sequence order and reports the *first* problem, classified
as ``altered`` (a record's content no longer matches its hash, or its hash no longer matches its
successor's link), ``inserted`` (a record that was not written by Wardgate sits in the chain) or
``missing`` (a sequence number or the chain's recorded end is absent).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from wardgate.store.tables import GENESIS_HASH

#: The fields a record's hash covers, in the order they are exported.
HASHED_FIELDS: tuple[str, ...] = (
    "seq",
    "ts",
    "kind",
    "request_id",
    "key_id",
    "user",
    "client_ip",
    "model_asked",
    "backend_used",
    "prompt_tokens",
    "completion_tokens",
    "latency_ms",
    "status",
    "error_code",
    "stream",
    "guard_decisions",
    "routing",
    "content_mode",
    "prompt",
    "completion",
    "prev_hash",
)

#: Fields added after the chain format was fixed: hashed (and exported) only when set, so
#: every record written before them keeps its hash.
OPTIONAL_HASHED_FIELDS: tuple[str, ...] = ("receipt",)

Problem = Literal["altered", "inserted", "missing"]


def format_ts(value: datetime) -> str:
    """The canonical text of a timestamp (UTC, microseconds)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_bytes(record: Mapping[str, Any]) -> bytes:
    """The exact bytes hashed for a record (all :data:`HASHED_FIELDS`, nothing else)."""
    fields = {name: record[name] for name in HASHED_FIELDS}
    for name in OPTIONAL_HASHED_FIELDS:
        if record.get(name) is not None:
            fields[name] = record[name]
    if isinstance(fields["ts"], datetime):
        fields["ts"] = format_ts(fields["ts"])
    fields["latency_ms"] = float(fields["latency_ms"])
    fields["stream"] = bool(fields["stream"])
    return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)


def record_hash(record: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_bytes(record)).hexdigest()


@dataclass(frozen=True, slots=True)
class ChainReport:
    """The outcome of verifying an audit chain."""

    ok: bool
    #: Records verified intact.
    checked: int
    #: The chain is intact up to and including this sequence number.
    last_seq: int
    first_bad_seq: int | None = None
    kind: Problem | None = None
    message: str = "the audit chain is intact"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def verify_rows(
    rows: Iterable[Mapping[str, Any]],
    head: tuple[int, str] | None,
    anchor: tuple[int, str] | None = None,
) -> ChainReport:
    """Verify records given in ascending ``seq`` order against the chain head ``(seq, hash)``.

    ``head=None`` skips the end-of-chain check (for a partial export, say). ``anchor`` is a
    ``(seq, hash)`` kept outside the database (e.g. printed by an earlier export): someone
    able to rewrite the log *and* recompute every later hash and the head defeats the chain
    alone, but not a pinned hash they cannot reach.
    """
    expected_seq = 1
    prev_hash = GENESIS_HASH
    before_prev_hash: str | None = None
    checked = 0
    iterator = iter(rows)
    row = next(iterator, None)
    while row is not None:
        following = next(iterator, None)
        seq = int(row["seq"])
        if head is not None and seq > head[0]:
            return _bad(
                checked,
                seq,
                "inserted",
                f"record {seq} lies beyond the chain head "
                f"({head[0]}): it was added outside Wardgate",
            )
        if seq > expected_seq:
            return _bad(checked, expected_seq, "missing", _missing_message(expected_seq, seq))
        actual = record_hash(row)
        if actual != row["hash"]:
            return _content_mismatch(checked, row, following, prev_hash)
        if row["prev_hash"] != prev_hash:
            if before_prev_hash is not None and row["prev_hash"] == before_prev_hash:
                return _bad(
                    checked,
                    seq - 1,
                    "inserted",
                    f"record {seq} links to record "
                    f"{seq - 2}: record {seq - 1} was inserted into the chain",
                )
            return _bad(
                checked,
                seq - 1,
                "altered",
                f"record {seq - 1} no longer matches the "
                f"hash that record {seq} stores for it: it was altered",
            )
        if anchor is not None and seq == anchor[0] and actual != anchor[1]:
            return _bad(
                checked,
                seq,
                "altered",
                f"record {seq} does not match the pinned hash "
                "from outside the database: the log was rewritten",
            )
        before_prev_hash, prev_hash = prev_hash, actual
        expected_seq = seq + 1
        checked += 1
        row = following
    last_seq = expected_seq - 1
    if anchor is not None and last_seq < anchor[0]:
        return _bad(
            checked,
            last_seq + 1,
            "missing",
            f"the log ends at {last_seq} but record {anchor[0]} was pinned",
        )
    if head is not None:
        head_seq, head_hash = head
        if last_seq < head_seq:
            return _bad(
                checked,
                last_seq + 1,
                "missing",
                f"the chain head says {head_seq} "
                f"records were written but the log ends at {last_seq}",
            )
        if head_hash != prev_hash:
            return _bad(
                checked,
                last_seq,
                "altered",
                f"record {last_seq} does not match the "
                "hash recorded in the chain head: it was altered",
            )
    return ChainReport(ok=True, checked=checked, last_seq=last_seq)


def _content_mismatch(
    checked: int,
    row: Mapping[str, Any],
    following: Mapping[str, Any] | None,
    prev_hash: str,
) -> ChainReport:
    """A record's fields do not hash to its stored hash: altered, or renumbered around a gap."""
    seq = int(row["seq"])
    stored = row["hash"]
    if (
        following is not None
        and following["prev_hash"] == prev_hash
        and record_hash({**following, "seq": int(following["seq"]) - 1}) == following["hash"]
    ):
        return _bad(
            checked,
            seq,
            "inserted",
            f"record {seq} was inserted: the record after it "
            f"was renumbered and links straight to record {seq - 1}",
        )
    if record_hash({**row, "seq": seq - 1}) == stored:
        return _bad(
            checked,
            seq - 1,
            "inserted",
            f"record {seq} was renumbered from {seq - 1}: a record was inserted at {seq - 1}",
        )
    if record_hash({**row, "seq": seq + 1}) == stored:
        return _bad(
            checked,
            seq,
            "missing",
            f"record {seq} was renumbered from {seq + 1}: the original record {seq} was removed",
        )
    return _bad(checked, seq, "altered", f"record {seq} does not match its hash: it was altered")


def _missing_message(expected: int, found: int) -> str:
    if found == expected + 1:
        return f"record {expected} is missing"
    return f"records {expected}-{found - 1} are missing"


def _bad(checked: int, seq: int, kind: Problem, message: str) -> ChainReport:
    return ChainReport(
        ok=False, checked=checked, last_seq=seq - 1, first_bad_seq=seq, kind=kind, message=message
    )
