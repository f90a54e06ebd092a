"""Record that a database's first admin key was made, so no restart ever mints another.

Until this revision the gateway created an admin key on start whenever no *active* one existed,
so revoking every admin key during an incident and restarting minted a fresh one into the
logs. From now on the first start writes a ``admin_bootstrapped`` row into ``wardgate_meta``
once; this migration writes it for databases that already hold an admin key (active, revoked
or expired), because their first start has happened.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_MARK = "admin_bootstrapped"


def upgrade() -> None:
    conn = op.get_bind()
    keys = sa.table("wardgate_api_keys", sa.column("admin", sa.Boolean))
    meta = sa.table("wardgate_meta", sa.column("name", sa.String), sa.column("value", sa.String))
    has_admin = conn.execute(
        sa.select(sa.func.count()).select_from(keys).where(keys.c.admin.is_(True))
    ).scalar_one()
    marked = conn.execute(
        sa.select(sa.func.count()).select_from(meta).where(meta.c.name == _MARK)
    ).scalar_one()
    if has_admin and not marked:
        when = datetime.now(UTC).isoformat(timespec="seconds")
        conn.execute(sa.insert(meta).values(name=_MARK, value=f"{when} (admin key existed)"))


def downgrade() -> None:
    meta = sa.table("wardgate_meta", sa.column("name", sa.String))
    op.get_bind().execute(sa.delete(meta).where(meta.c.name == _MARK))
