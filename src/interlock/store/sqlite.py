"""What is SQLite's own: pragmas for durability, `BEGIN IMMEDIATE` writes, one writer per process.

The contract itself lives in `interlock.store.core`; this module only shapes the engine.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from interlock.errors import BadInput

#: Statements that make the audit table refuse updates and deletes.
AUDIT_GUARD = [
    "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit "
    "BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END",
    "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit "
    "BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END",
]

#: What a database owner would run to bypass the guard (used by the tamper tests).
AUDIT_UNGUARD = ["DROP TRIGGER audit_no_update", "DROP TRIGGER audit_no_delete"]


#: How long a write waits for another connection's write lock, in milliseconds.
BUSY_TIMEOUT_MS = 30_000

#: `?synchronous=` values a database URL may carry; `full` is the default.
SYNC_LEVELS = ("full", "extra", "normal")


class SQLiteBackend:
    """A file database in WAL mode, written by one writer at a time.

    Durability: `synchronous=FULL` (the default) syncs every commit to disk, so an
    acknowledged decision or claim survives a power loss too: losing a claim could let an
    action run twice. `sqlite:///FILE?synchronous=normal` keeps commits across any crash of
    the process but may lose the newest ones to a power loss or OS crash, for several times
    the write throughput; choose it only where that trade is acceptable.
    """

    name = "sqlite"
    audit_guard = AUDIT_GUARD
    audit_unguard = AUDIT_UNGUARD
    #: One writer at a time and no network: nothing to gain from pipelining.
    pipeline = False
    #: Writes are serialised anyway: one kept connection does them all.
    single_writer = True
    #: Audit entries are chained in Python (`interlock.store.audit.chain`): one writer.
    append = None

    #: Taken in the migration transaction; BEGIN IMMEDIATE already serialises SQLite.
    migration_lock: str | None = None

    def __init__(self) -> None:
        # BEGIN IMMEDIATE already serialises writers across processes; the in-process lock
        # keeps threads from queueing inside SQLite's busy handler instead.
        self._writer = threading.RLock()

    def create_engine(self, url: str, connect_args: dict[str, Any] | None = None) -> sa.Engine:
        args: dict[str, Any] = {"timeout": 30.0, "check_same_thread": False}
        args.update(connect_args or {})
        parsed = sa.engine.make_url(url)
        level = str(parsed.query.get("synchronous", "full")).lower()
        if level not in SYNC_LEVELS:
            raise BadInput(f"`synchronous={level}` in the database URL: use one of "
                           f"{', '.join(SYNC_LEVELS)}")
        parsed = parsed.difference_update_query(["synchronous"])
        pragma = f"PRAGMA synchronous={level.upper()}"
        engine = sa.create_engine(parsed, connect_args=args, pool_size=8, max_overflow=32)

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Autocommit at the driver, so SQLAlchemy's begin below is the only BEGIN.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(pragma)
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _on_begin(conn: sa.Connection) -> None:
            read = conn.get_execution_options().get("interlock_read", False)
            # Straight to the driver: this runs once per transaction, on every write.
            conn.connection.driver_connection.execute(  # type: ignore[union-attr]
                "BEGIN" if read else "BEGIN IMMEDIATE"
            )

        return engine

    def write_lock(self) -> AbstractContextManager[Any]:
        return self._writer

    def try_write_lock(self) -> Callable[[], None] | None:
        return self._writer.release if self._writer.acquire(blocking=False) else None

    def begin_now(self, conn: sa.Connection) -> sa.RootTransaction | None:
        """BEGIN IMMEDIATE without waiting: None while another connection (another process)
        holds the write lock, instead of sleeping in SQLite's busy handler."""
        driver = conn.connection.driver_connection
        assert driver is not None
        driver.execute("PRAGMA busy_timeout=0")
        try:
            return conn.begin()
        except (sa.exc.OperationalError, sqlite3.OperationalError) as exc:
            # the BEGIN runs in the engine's `begin` event, on the driver: its own error
            orig = getattr(exc, "orig", exc)
            if getattr(orig, "sqlite_errorname", None) in ("SQLITE_BUSY", "SQLITE_LOCKED"):
                return None
            raise
        finally:
            driver.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")

    def insert_ignore(self, table: sa.Table) -> Any:
        return sqlite_insert(table).on_conflict_do_nothing()

    def insert(self, table: sa.Table) -> Any:
        return sqlite_insert(table)
