"""Crash safety: a writer killed with SIGKILL at random moments, 50 times on each backend.

Afterwards the audit chain verifies, every reported transition is there, and every request's
state is the one its audit entries lead to.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).parent))

from crash_child import run

from interlock.store import State, Store, open_store

KILLS = 50
PG_URL = os.environ.get("INTERLOCK_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'crash.db'}", {}
        return
    schema = f"il_crash_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    except sa.exc.OperationalError as exc:
        admin.dispose()
        pytest.fail(f"PostgreSQL is unreachable at {PG_URL}: {exc.orig}", pytrace=False)
    try:
        yield PG_URL, {"options": f"-csearch_path={schema}"}
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


def test_sigkill_at_random_moments(target: tuple[str, dict[str, Any]]) -> None:
    url, connect_args = target
    open_store(url, connect_args=connect_args).close()  # migrate before the first kill
    ctx = multiprocessing.get_context("fork")
    rng = random.Random(7)
    reported: list[tuple[str, str]] = []
    for i in range(KILLS):
        recv, send = ctx.Pipe(duplex=False)
        child = ctx.Process(target=run, args=(url, connect_args, i, send), daemon=True)
        child.start()
        send.close()
        assert recv.poll(30), "the writer did not start"
        assert recv.recv() == ("ready", "")
        time.sleep(rng.uniform(0.0, 0.15))
        child.kill()
        child.join()
        while True:
            try:
                msg = recv.recv()
            except EOFError:
                break
            assert msg[0] != "error", msg[1]
            reported.append(msg)
        recv.close()
    assert len(reported) > KILLS
    store = open_store(url, connect_args=connect_args)
    try:
        _check(store, reported)
    finally:
        store.close()


def _check(store: Store, reported: list[tuple[str, str]]) -> None:
    report = store.verify()
    assert report.ok, report
    replayed: dict[str, str] = {}
    for entry in store.audit_entries():
        if entry.event.startswith("state.") and entry.request_id is not None:
            assert replayed.get(entry.request_id, "submitted") == entry.data["from"]
            replayed[entry.request_id] = entry.data["to"]
    history: dict[str, list[str]] = {}
    for entry in store.audit_entries():
        if entry.event.startswith("state.") and entry.request_id is not None:
            history.setdefault(entry.request_id, []).append(entry.data["to"])
    for rid, state in reported:
        assert state in history.get(rid, []), f"{rid} reported {state} but it was lost"
    requests = store.list_requests(limit=1_000_000)
    assert {r.id for r in requests} == set(replayed)
    for r in requests:
        assert r.state is State(replayed[r.id]), f"{r.id} is {r.state}, its audit says otherwise"
