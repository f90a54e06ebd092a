"""Alembic environment: always run with a connection handed over by ``upgrade_database``.

There is no ``alembic.ini`` and no URL here on purpose: the caller owns the connection and
the transaction (and the lock that serialises concurrent upgrades).
"""

from __future__ import annotations

from alembic import context

from wardgate.store.tables import VERSION_TABLE, metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "run migrations through wardgate.store.db.upgrade_database(url), not the alembic CLI"
    )

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    version_table=VERSION_TABLE,
)
with context.begin_transaction():
    context.run_migrations()
