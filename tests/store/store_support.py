"""What the store tests share beside their fixtures: the test database handle, the
PostgreSQL URL, and a committer that holds COMMITs. A module of its own name, so every test
folder can import it unambiguously.
"""

from __future__ import annotations

import itertools
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from interlock.clock import FakeClock
from interlock.store import Store, open_store

PG_URL = os.environ.get("INTERLOCK_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
RUN = uuid.uuid4().hex[:8]
_schemas = itertools.count()
_pg_url: str | None = None


def pg_url() -> str:
    """A PostgreSQL URL that connects (trying `root` when `postgres` is refused), or fail."""
    global _pg_url
    if _pg_url is not None:
        return _pg_url
    candidates = [PG_URL]
    if "postgres@" in PG_URL:
        candidates.append(PG_URL.replace("postgres@", "root@", 1))
    errors = []
    for url in candidates:
        engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
        try:
            with engine.connect():
                _pg_url = url
                return url
        except sa.exc.OperationalError as exc:
            errors.append(f"{url}: {str(exc.orig).strip()}")
        finally:
            engine.dispose()
    pytest.fail(
        "PostgreSQL is unreachable; the store contract suite needs it "
        "(set INTERLOCK_TEST_PG). Tried: " + "; ".join(errors),
        pytrace=False,
    )


@dataclass
class DB:
    """One test database: how to open a store on it, and how to reach it as its owner."""

    backend: str
    url: str
    connect_args: dict[str, Any]

    def open(self, clock: FakeClock | None = None) -> Store:
        return open_store(self.url, clock=clock, connect_args=self.connect_args)

    def owner_exec(self, *statements: str) -> None:
        """Run SQL as the database owner would, bypassing the store."""
        from interlock.store.backends import backend_for_url

        engine = backend_for_url(self.url).create_engine(self.url, self.connect_args)
        try:
            with engine.begin() as conn:
                for s in statements:
                    conn.exec_driver_sql(s)
        finally:
            engine.dispose()

    @property
    def cli_url(self) -> str:
        """The URL alone, as a user passes it to `--db` (the schema rides in `options`)."""
        if "options" not in self.connect_args:
            return self.url
        return f"{self.url}?options={quote(self.connect_args['options'])}"

    @property
    def unguard(self) -> list[str]:
        from interlock.store.backends import backend_for_url

        return backend_for_url(self.url).audit_unguard


def pg_schema() -> Iterator[DB]:
    url = pg_url()
    schema = f"il_{RUN}_{next(_schemas)}"
    admin = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        yield DB("postgres", url, {"options": f"-csearch_path={schema}"})
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


class HeldCommits(ThreadPoolExecutor):
    """A store's committer thread for the event loop's group (`Store.run_grouped`), made to
    wait for `go` before each COMMIT, or to fail it with `fail`."""

    def __init__(self, fail: BaseException | None = None) -> None:
        super().__init__(1)
        self.go = threading.Event()
        self.fail = fail

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        def held() -> Any:
            self.go.wait(10)
            if self.fail is not None:
                raise self.fail
            return fn(*args, **kwargs)

        return super().submit(held)


class WriterHeld:
    """A thread inside a write on `store` (its audit entry `leader`), holding the single
    writer until `release` is set; `join` once released."""

    def __init__(self, store: Store) -> None:
        self.inside, self.release = threading.Event(), threading.Event()

        def leader() -> None:
            with store._write() as tx:
                tx.audit("system", "leader", {})
                self.inside.set()
                self.release.wait(10)

        self.thread = threading.Thread(target=leader)
        self.thread.start()
        assert self.inside.wait(10), "the holding write did not start"

    def join(self) -> None:
        self.release.set()
        self.thread.join(10)
