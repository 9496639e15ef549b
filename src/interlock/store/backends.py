"""The seam between the store contract and a database: one small object per backend.

`Backend` lists the few things that truly differ; the contract in `core` uses nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol

import sqlalchemy as sa

from interlock.errors import BadInput


class Backend(Protocol):
    """What differs between SQLite and PostgreSQL."""

    name: str
    audit_guard: list[str]
    audit_unguard: list[str]
    migration_lock: str | None
    pipeline: bool
    append: Any
    single_writer: bool
    """One writer per process at a time, so the store keeps one connection for writes."""

    def create_engine(
        self, url: str, connect_args: dict[str, Any] | None = None
    ) -> sa.Engine: ...

    def write_lock(self) -> AbstractContextManager[Any]: ...

    def try_write_lock(self) -> Callable[[], None] | None:
        """Take the in-process write lock if it is free: its release; None if it is held."""
        ...

    def begin_now(self, conn: sa.Connection) -> sa.RootTransaction | None:
        """Begin a write transaction if that needs no wait for another's lock, else None."""
        ...

    def insert_ignore(self, table: sa.Table) -> Any: ...

    def insert(self, table: sa.Table) -> Any:
        """The dialect's INSERT, which has `on_conflict_do_update`."""
        ...


def backend_for_url(url: str) -> Backend:
    """The backend a database URL names (`sqlite:///FILE` or `postgresql://...`)."""
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    return backend_for_dialect(scheme)


def backend_for_dialect(name: str) -> Backend:
    """The backend of a SQLAlchemy dialect name."""
    if name == "sqlite":
        from interlock.store.sqlite import SQLiteBackend

        return SQLiteBackend()
    if name in ("postgresql", "postgres"):
        from interlock.store.postgres import PostgresBackend

        return PostgresBackend()
    raise BadInput(f"unsupported database `{name}`: use sqlite:///FILE or postgresql://...")
