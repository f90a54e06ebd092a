"""Engines and the packaged migrations, on real SQLite and PostgreSQL."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from wardgate.errors import ConfigError
from wardgate.store.db import (
    MIGRATIONS_DIR,
    create_engine_for,
    current_revision,
    open_database,
    upgrade_database,
)

#: The newest revision, from the migration scripts themselves (helpers add revisions).
HEAD = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()

TABLES = {
    "wardgate_alembic_version",
    "wardgate_key_suspensions",
    "wardgate_api_keys",
    "wardgate_audit_log",
    "wardgate_audit_head",
    "wardgate_meta",
}


def test_migrations_ship_inside_the_package() -> None:
    assert (MIGRATIONS_DIR / "env.py").is_file()
    assert sorted(p.name for p in (MIGRATIONS_DIR / "versions").glob("0*.py")) == [
        "0001_keys_and_audit.py",
        "0002_meta.py",
        "0003_admin_bootstrap_mark.py",
        "0004_provenance.py",
        "0005_monitor.py",
    ]
    assert not list(MIGRATIONS_DIR.parents[2].glob("alembic.ini"))


def test_upgrade_creates_the_schema_once(db_url) -> None:
    engine = create_engine_for(db_url)
    assert current_revision(engine) is None
    upgrade_database(db_url)
    upgrade_database(engine)  # second run is a no-op
    assert current_revision(engine) == HEAD
    assert set(sa.inspect(engine).get_table_names()) >= TABLES
    with engine.connect() as conn:
        head = conn.execute(sa.text("SELECT id, seq FROM wardgate_audit_head")).all()
    assert head == [(1, 0)]
    engine.dispose()


def test_concurrent_first_starts_migrate_once(db_url) -> None:
    errors: list[BaseException] = []

    def start() -> None:
        try:
            open_database(db_url).dispose()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    engine = create_engine_for(db_url)
    assert current_revision(engine) == HEAD
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM wardgate_audit_head")).scalar() == 1
    engine.dispose()


def test_sqlite_uses_wal_and_creates_its_directory(tmp_path) -> None:
    engine = create_engine_for(f"sqlite:///{tmp_path / 'deep' / 'dir' / 'w.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    assert (tmp_path / "deep" / "dir").is_dir()
    engine.dispose()


def test_bad_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        create_engine_for("not a url")


_FIRST_START = """
import sys
from wardgate.store.audit import AuditRecord, append_records
from wardgate.store.db import open_database
from wardgate.store.keys import KeyStore

engine = open_database(sys.argv[1])
store = KeyStore(engine, b"s" * 32)
_, raw = store.create(owner="o")
assert store.verify(raw) is not None
append_records(engine, [AuditRecord(request_id="r")])
engine.dispose()
"""


@pytest.mark.slow
def test_concurrent_first_starts_in_processes_under_load(tmp_path) -> None:
    """Four gateways' first start at once on one fresh SQLite file, on a loaded machine (two
    busy loops compete for the cores): every one migrates, writes and reads."""
    import subprocess
    import sys

    hogs = [subprocess.Popen(["yes"], stdout=subprocess.DEVNULL) for _ in range(2)]
    try:
        for round_ in range(1):
            url = f"sqlite:///{tmp_path / f'round{round_}.db'}"
            children = [
                subprocess.Popen(
                    [sys.executable, "-c", _FIRST_START, url],
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for _ in range(4)
            ]
            failures = [
                err
                for child in children
                if (err := child.communicate(timeout=240)[1]) and child.returncode
            ]
            assert failures == []
            engine = create_engine_for(url)
            assert current_revision(engine) == HEAD
            with engine.connect() as conn:
                assert conn.execute(sa.text("SELECT count(*) FROM wardgate_api_keys")).scalar() == 4
                assert conn.execute(sa.text("SELECT seq FROM wardgate_audit_head")).scalar() == 4
            engine.dispose()
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def test_sqlite_migrations_wait_for_the_migration_file_lock(tmp_path) -> None:
    """A second first start waits while another process holds ``<db>.lock`` (its
    migration is running), instead of racing it on a file not yet in WAL mode."""
    from filelock import FileLock

    path = tmp_path / "w.db"
    done = threading.Event()
    holder = FileLock(f"{path}.lock")
    holder.acquire()
    try:
        thread = threading.Thread(
            target=lambda: (open_database(f"sqlite:///{path}").dispose(), done.set())
        )
        thread.start()
        assert not done.wait(1.0), "migrated while another process held the migration lock"
    finally:
        holder.release()
    thread.join(timeout=60)
    assert done.is_set()
    engine = create_engine_for(f"sqlite:///{path}")
    assert current_revision(engine) == HEAD
    engine.dispose()
