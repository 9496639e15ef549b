"""Fixtures for the store contract suite: the same tests on SQLite and on a real PostgreSQL.

PostgreSQL comes from INTERLOCK_TEST_PG; each test gets a fresh schema, dropped afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from store_support import DB, pg_schema, pg_url  # noqa: F401

from interlock.clock import FakeClock
from interlock.store import Store, open_store


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DB]:
    if request.param == "sqlite":
        yield DB("sqlite", f"sqlite:///{tmp_path / 'interlock.db'}", {})
    else:
        yield from pg_schema()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(db: DB, clock: FakeClock) -> Iterator[Store]:
    s = db.open(clock)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    """A store on a SQLite file, for what only SQLite's single writer does."""
    s = open_store(f"sqlite:///{tmp_path / 'interlock.db'}")
    try:
        yield s
    finally:
        s.close()
