"""Which database errors mean "the database is away, try again" (StoreUnavailable: 503 over
HTTP, fail closed or fail open in the SDK) and which are a statement refused (a bug: 500)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from interlock.errors import StoreUnavailable
from interlock.store import Store, open_store
from interlock.store.core import _outage


def _error(run: Callable[[], object]) -> BaseException:
    try:
        run()
    except sqlite3.Error as exc:
        return exc
    raise AssertionError("no error")


def test_sqlite_busy_is_an_outage_and_a_refused_statement_is_not(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    busy = _error(lambda: other.execute("BEGIN IMMEDIATE"))
    assert getattr(busy, "sqlite_errorname", None) == "SQLITE_BUSY"
    assert _outage(busy)
    missing = _error(lambda: other.execute("SELECT * FROM no_such_table"))
    assert getattr(missing, "sqlite_errorname", None) == "SQLITE_ERROR"
    assert not _outage(missing)
    holder.execute("ROLLBACK")
    holder.close()
    other.close()


def test_a_store_write_blocked_by_another_process_is_store_unavailable(tmp_path: Path) -> None:
    """Another process holds SQLite's write lock past the busy timeout: the write fails as
    StoreUnavailable, and nothing of it is stored."""
    url = f"sqlite:///{tmp_path / 'interlock.db'}"
    store: Store = open_store(url)
    try:
        store.record("system", "before", {})
        holder = sqlite3.connect(tmp_path / "interlock.db", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        kept = store._kept().connection.driver_connection
        assert kept is not None
        kept.execute("PRAGMA busy_timeout=50")  # instead of 30 s
        with pytest.raises(StoreUnavailable, match="cannot be used right now"):
            store.record("system", "blocked", {})
        holder.execute("ROLLBACK")
        holder.close()
        store.record("system", "after", {})
        assert [e.event for e in store.audit_entries()][-2:] == ["before", "after"]
        assert store.verify().ok
    finally:
        store.close()
