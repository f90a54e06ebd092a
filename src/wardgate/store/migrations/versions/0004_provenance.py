"""Provenance: each audit record keeps the signed receipt its answer carried, and API keys
gain scopes (``watermark:detect`` lets a non-admin key call the detection endpoint).

Both columns are nullable: records written before this revision have no receipt (and their
chain hashes do not cover one, see ``store/chain.OPTIONAL_HASHED_FIELDS``); keys made before
it have no scopes.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("wardgate_audit_log") as batch:
        batch.add_column(sa.Column("receipt", sa.Text(), nullable=True))
    with op.batch_alter_table("wardgate_api_keys") as batch:
        batch.add_column(sa.Column("scopes", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("wardgate_api_keys") as batch:
        batch.drop_column("scopes")
    with op.batch_alter_table("wardgate_audit_log") as batch:
        batch.drop_column("receipt")
