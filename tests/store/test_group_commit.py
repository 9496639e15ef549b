"""Group commit on SQLite's single writer: writes that wait for the leader's transaction run
inside it, each in its own savepoint; a failing one is rolled back alone, and every other write
is committed, audited and chained as if it had run by itself."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from store_helpers import action, result

from interlock.errors import Conflict
from interlock.policy.records import Decision
from interlock.store import State, Store, open_store


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'interlock.db'}")
    try:
        yield s
    finally:
        s.close()


def test_writes_waiting_on_the_leader_join_its_transaction(sqlite_store: Store) -> None:
    store = sqlite_store
    inside, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []
    done: list[str] = []

    def leader() -> None:
        with store._write() as tx:
            tx.audit("system", "leader", {})
            inside.set()
            release.wait(10)

    def writer(i: int) -> None:
        try:
            if i == 3:  # an idempotency clash: this write alone fails
                store.submit(agent="bot", action=action(idempotency_key="k", n=9),
                             result=result(Decision.ALLOW))
                return
            r = store.submit(agent="bot", action=action(idempotency_key=f"w{i}"),
                             result=result(Decision.ALLOW))
            done.append(r.id)
        except BaseException as exc:
            errors.append(exc)

    first = store.submit(agent="bot", action=action(idempotency_key="k"),
                         result=result(Decision.ALLOW))
    lead = threading.Thread(target=leader)
    lead.start()
    assert inside.wait(10)
    writers = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for w in writers:
        w.start()
    while len(store._groups._waiting) < len(writers):  # every writer has joined
        threading.Event().wait(0.01)
    release.set()
    lead.join(10)
    for w in writers:
        w.join(10)

    assert len(done) == 7
    assert [type(e) for e in errors] == [Conflict]
    assert all(store.get(rid).state is State.ALLOWED for rid in done)
    assert store.get(first.id).version == first.version
    events = [e.event for e in store.audit_entries()]
    assert events.count("leader") == 1 and events.count("submitted") == 8
    report = store.verify()
    assert report.ok, report.problem


def test_a_failing_leader_leaves_the_joined_writes_committed(sqlite_store: Store) -> None:
    store = sqlite_store
    inside, release = threading.Event(), threading.Event()
    done: list[str] = []

    def leader() -> None:
        with pytest.raises(RuntimeError), store._write() as tx:
            tx.audit("system", "leader", {})
            inside.set()
            release.wait(10)
            raise RuntimeError("boom")

    def writer(i: int) -> None:
        done.append(store.submit(agent="bot", action=action(n=i),
                                 result=result(Decision.ALLOW)).id)

    lead = threading.Thread(target=leader)
    lead.start()
    assert inside.wait(10)
    writers = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for w in writers:
        w.start()
    while len(store._groups._waiting) < len(writers):
        threading.Event().wait(0.01)
    release.set()
    lead.join(10)
    for w in writers:
        w.join(10)

    assert len(done) == 4
    events = [e.event for e in store.audit_entries()]
    assert "leader" not in events and events.count("submitted") == 4
    assert store.verify().ok
