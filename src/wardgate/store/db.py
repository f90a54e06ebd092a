"""Engines and migrations: the only place that knows how SQLite and PostgreSQL differ.

Two things need care. SQLite's Python driver opens transactions lazily and as ``DEFERRED``,
so two processes appending to the audit chain could both read the same chain head and then
collide; every engine built here therefore issues ``BEGIN`` itself, and ``BEGIN IMMEDIATE``
(the database write lock, taken up front) for connections marked with :func:`write_connection`.
PostgreSQL serialises appends with a row lock on the chain head instead (see ``audit.py``).

Migrations ship inside the package and run programmatically, so a deployment needs no
``alembic.ini``. Concurrent first starts of several gateways are serialised by an advisory
lock on PostgreSQL, and on SQLite by a file lock (``<database>.lock``) taken *before* the
first connection: a fresh file is still in rollback-journal mode until one connection has
switched it to WAL, and in that mode SQLite answers a lock upgrade that could deadlock with
an immediate "database is locked" instead of waiting out the busy timeout.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from filelock import FileLock, Timeout
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool

from wardgate.errors import ConfigError
from wardgate.store.tables import VERSION_TABLE

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

#: Execution option that asks for ``BEGIN IMMEDIATE`` on SQLite.
_WRITE_OPTION = "wardgate_write"
#: Arbitrary constant for ``pg_advisory_xact_lock`` around migrations ("wardgate" in ASCII).
_MIGRATION_LOCK_KEY = 0x7761726467617465
#: Seconds a SQLite connection waits for another process's write lock before failing.
_SQLITE_BUSY_TIMEOUT_S = 30.0


def create_engine_for(url: str, **kwargs: Any) -> Engine:
    """Build an engine for ``url`` with Wardgate's transaction semantics.

    ``sqlite:///path`` gets WAL mode (readers never block the audit writer), a busy timeout
    and explicit ``BEGIN``; its parent directory is created. PostgreSQL gets pre-ping so a
    restarted database does not fail the first request after it. Neither ever puts bound
    parameters into an error message (``hide_parameters``): they include key digests.
    """
    kwargs.setdefault("hide_parameters", True)
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"database_url is not a valid SQLAlchemy URL: {exc}") from exc
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, parsed.database, **kwargs)
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def _sqlite_engine(url: str, database: str | None, **kwargs: Any) -> Engine:
    memory = not database or database == ":memory:"
    connect_args = kwargs.pop("connect_args", {})
    connect_args.setdefault("timeout", _SQLITE_BUSY_TIMEOUT_S)
    connect_args.setdefault("check_same_thread", False)
    if memory:
        # One shared connection, or every checkout would see a different empty database.
        kwargs.setdefault("poolclass", StaticPool)
    else:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)  # type: ignore[arg-type]
    engine = create_engine(url, connect_args=connect_args, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the driver; `_on_begin` issues BEGIN itself.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={int(_SQLITE_BUSY_TIMEOUT_S * 1000)}")
            # Switching to WAL takes an exclusive lock; once the file is WAL (it stays so), a
            # connection only reads the mode, so busy databases are not contended for it.
            if not memory and cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            if not memory:
                # NORMAL in WAL mode survives a process crash (SIGKILL); only an OS crash or
                # power loss can drop the last commits.
                cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(_WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


@contextmanager
def write_connection(engine: Engine) -> Iterator[Connection]:
    """A connection whose transactions take the database write lock at ``BEGIN`` on SQLite.

    Use it for read-modify-write sequences (chain appends, migrations); on PostgreSQL it is a
    plain connection and callers lock rows explicitly.
    """
    with engine.connect() as conn:
        conn.execution_options(**{_WRITE_OPTION: True})
        yield conn


def _alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # The URL is not put into the config (it may hold a password and '%' breaks its
    # interpolation); env.py uses this connection instead.
    config.attributes["connection"] = connection
    return config


def upgrade_database(target: str | Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (default: the newest), creating it on a fresh database.

    Safe to call from several processes at once: the whole upgrade runs in one transaction
    under an exclusive lock, so the second caller finds the work done.
    """
    engine = create_engine_for(target) if isinstance(target, str) else target
    try:
        with _migration_lock(engine), write_connection(engine) as conn, conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
                )
            command.upgrade(_alembic_config(conn), revision)
    finally:
        if isinstance(target, str):
            engine.dispose()


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """A file lock beside a SQLite database file (see the module docstring); nothing else."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    lock = FileLock(f"{Path(database).expanduser()}.lock", timeout=2 * _SQLITE_BUSY_TIMEOUT_S)
    try:
        lock.acquire()
    except Timeout as exc:
        raise ConfigError(
            f"another process has held the migration lock {lock.lock_file} for "
            f"{lock.timeout:g} s; is a migration stuck?"
        ) from exc
    try:
        yield
    finally:
        lock.release()


def open_database(url: str) -> Engine:
    """Migrate ``url`` to the newest schema and return an engine for it (what CLIs want)."""
    engine = create_engine_for(url)
    upgrade_database(engine)
    return engine


def current_revision(engine: Engine) -> str | None:
    """The schema revision the database is at (``None`` when it has never been migrated)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()
