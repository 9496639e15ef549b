"""Fixtures for the notification tests: a store with a fake clock (SQLite, and PostgreSQL in
a fresh schema), a gateway, and a real HTTP receiver on loopback that records what it is
sent and answers as each test plans.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from notify_helpers import POLICY, Receiver, serving

from interlock.clock import FakeClock
from interlock.gateway import Gateway
from interlock.policy import load_policy
from interlock.store import Store, open_store


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serving() as state:
        yield state


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


PG_URL = os.environ.get("INTERLOCK_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[Store]:
    if request.param == "sqlite":
        s = open_store(f"sqlite:///{tmp_path / 'interlock.db'}", clock=clock)
        yield s
        s.close()
        return
    schema = f"il_notify_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    except sa.exc.OperationalError as exc:
        admin.dispose()
        pytest.fail(f"PostgreSQL is unreachable (set INTERLOCK_TEST_PG): {exc.orig}",
                    pytrace=False)
    s = open_store(PG_URL, clock=clock, connect_args={"options": f"-csearch_path={schema}"})
    try:
        yield s
    finally:
        s.close()
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.fixture
def gateway(store: Store) -> Gateway:
    return Gateway(load_policy(POLICY), store, public_url="https://interlock.example")
