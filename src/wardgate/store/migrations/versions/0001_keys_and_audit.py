"""API keys, the hash-chained audit log and its head row.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "wardgate_api_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("models", sa.JSON, nullable=False),
        sa.Column("tier", sa.String(64), nullable=False),
        sa.Column("rpm", sa.Integer, nullable=True),
        sa.Column("tpm", sa.Integer, nullable=True),
        sa.Column("expires_at", _TS, nullable=True),
        sa.Column("admin", sa.Boolean, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("revoked_at", _TS, nullable=True),
        sa.Column("rotated_from", sa.String(32), nullable=True),
        sa.UniqueConstraint("digest", name="uq_wardgate_api_keys_digest"),
    )
    op.create_table(
        "wardgate_audit_log",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("ts", _TS, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("key_id", sa.String(32), nullable=True),
        sa.Column("user", sa.String(256), nullable=True),
        sa.Column("client_ip", sa.String(64), nullable=True),
        sa.Column("model_asked", sa.String(256), nullable=True),
        sa.Column("backend_used", sa.String(256), nullable=True),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("completion_tokens", sa.Integer, nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("error_code", sa.String(128), nullable=True),
        sa.Column("stream", sa.Boolean, nullable=False),
        sa.Column("guard_decisions", sa.JSON, nullable=False),
        sa.Column("routing", sa.JSON, nullable=True),
        sa.Column("content_mode", sa.String(8), nullable=False),
        sa.Column("prompt", sa.Text, nullable=True),
        sa.Column("completion", sa.Text, nullable=True),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_wardgate_audit_log_ts", "wardgate_audit_log", ["ts"])
    op.create_index("ix_wardgate_audit_log_key_id", "wardgate_audit_log", ["key_id"])
    op.create_index("ix_wardgate_audit_log_request_id", "wardgate_audit_log", ["request_id"])
    head = op.create_table(
        "wardgate_audit_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": "0" * 64}])


def downgrade() -> None:
    op.drop_table("wardgate_audit_head")
    op.drop_index("ix_wardgate_audit_log_request_id", "wardgate_audit_log")
    op.drop_index("ix_wardgate_audit_log_key_id", "wardgate_audit_log")
    op.drop_index("ix_wardgate_audit_log_ts", "wardgate_audit_log")
    op.drop_table("wardgate_audit_log")
    op.drop_table("wardgate_api_keys")
