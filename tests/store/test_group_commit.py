"""Group commit on SQLite's single writer: writes that wait for the leader's transaction run
inside it, each in its own savepoint; a failing one is rolled back alone, and every other write
is committed, audited and chained as if it had run by itself."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from store_helpers import action, result
from store_support import WriterHeld

from interlock.errors import Conflict, StoreUnavailable
from interlock.policy.records import Decision
from interlock.store import State, Store

Leader = Callable[[threading.Event, threading.Event], None]


def _behind_a_leader(store: Store, leader: Leader, writer: Callable[[int], None], n: int,
                     before_release: Callable[[], None] = lambda: None) -> None:
    """Run `leader(inside, release)`, which opens a write, sets `inside` and holds its
    transaction until `release`; start `n` threads of `writer(i)` and wait until every one
    has queued behind it; then `before_release()`, let the leader go, and wait for all."""
    inside, release = threading.Event(), threading.Event()
    lead = threading.Thread(target=leader, args=(inside, release))
    lead.start()
    assert inside.wait(10)
    writers = [threading.Thread(target=writer, args=(i,)) for i in range(n)]
    for w in writers:
        w.start()
    while len(store._groups._waiting) < n:
        threading.Event().wait(0.01)
    before_release()
    release.set()
    lead.join(10)
    for w in writers:
        w.join(10)


def test_writes_waiting_on_the_leader_join_its_transaction(sqlite_store: Store) -> None:
    store = sqlite_store
    errors: list[BaseException] = []
    done: list[str] = []

    def leader(inside: threading.Event, release: threading.Event) -> None:
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
    _behind_a_leader(store, leader, writer, 8)

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
    done: list[str] = []

    def leader(inside: threading.Event, release: threading.Event) -> None:
        with pytest.raises(RuntimeError), store._write() as tx:
            tx.audit("system", "leader", {})
            inside.set()
            release.wait(10)
            raise RuntimeError("boom")

    def writer(i: int) -> None:
        done.append(store.submit(agent="bot", action=action(n=i),
                                 result=result(Decision.ALLOW)).id)

    _behind_a_leader(store, leader, writer, 4)

    assert len(done) == 4
    events = [e.event for e in store.audit_entries()]
    assert "leader" not in events and events.count("submitted") == 4
    assert store.verify().ok


def test_writes_arriving_during_a_commit_share_the_next_one(sqlite_store: Store) -> None:
    """Writers that queue while the leader commits form one group behind it (one COMMIT for
    all of them), instead of each taking the lock to commit alone."""
    store = sqlite_store
    store.submit(agent="bot", action=action(n=0), result=result(Decision.ALLOW))  # warm
    commits: list[str] = []
    store._kept().connection.driver_connection.set_trace_callback(
        lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    groups = store._groups
    closing = groups.next
    writers: list[threading.Thread] = []
    done: list[str] = []

    def writer(i: int) -> None:
        done.append(store.submit(agent="bot", action=action(n=i),
                                 result=result(Decision.ALLOW)).id)

    def next_then_queue() -> object:
        member = closing()
        if member is None and not writers:  # the first leader is about to commit
            writers.extend(threading.Thread(target=writer, args=(i,)) for i in range(1, 6))
            for w in writers:
                w.start()
            while len(groups._waiting) < len(writers):
                threading.Event().wait(0.005)
        return member

    groups.next = next_then_queue  # type: ignore[method-assign]
    first = store.submit(agent="bot", action=action(n=99), result=result(Decision.ALLOW))
    for w in writers:
        w.join(10)

    assert len(done) == 5
    assert len(commits) == 2, commits  # the first write's, then one for the five behind it
    assert all(store.get(rid).state is State.ALLOWED for rid in [first.id, *done])
    assert not groups._busy and not groups._waiting
    assert store.verify().ok


def test_a_write_inside_a_write_is_refused(sqlite_store: Store) -> None:
    with sqlite_store._write(), pytest.raises(RuntimeError, match="inside another write"), \
            sqlite_store._write():
        pass


def test_a_failed_commit_fails_every_write_of_its_group(sqlite_store: Store,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """When the shared COMMIT fails, no write of the group is answered as done, nothing of
    it is stored, and the next writes commit as usual."""
    store = sqlite_store
    head = store.audit_head()
    outcomes: list[BaseException | str] = []

    def leader(inside: threading.Event, release: threading.Event) -> None:
        try:
            with store._write() as tx:
                tx.audit("system", "leader", {})
                inside.set()
                release.wait(10)
            outcomes.append("leader committed")
        except BaseException as exc:
            outcomes.append(exc)

    def writer(i: int) -> None:
        try:
            outcomes.append(store.submit(agent="bot", action=action(n=i),
                                         result=result(Decision.ALLOW)).id)
        except BaseException as exc:
            outcomes.append(exc)

    def failing_commit(self: object) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    _behind_a_leader(store, leader, writer, 3, before_release=lambda: monkeypatch.setattr(
        sa.engine.RootTransaction, "commit", failing_commit))
    monkeypatch.undo()

    assert len(outcomes) == 4
    assert all(isinstance(o, BaseException) for o in outcomes), outcomes
    # the leader's as well as the joined writes': a failed commit is the database's trouble
    assert all(isinstance(o, StoreUnavailable) for o in outcomes), outcomes
    assert store.audit_head() == head
    assert store.list_requests() == []
    after = store.submit(agent="bot", action=action(n=9), result=result(Decision.ALLOW))
    assert store.get(after.id).state is State.ALLOWED
    assert not store._groups._busy
    assert store.verify().ok


def test_an_idle_sweep_does_not_take_the_writer(sqlite_store: Store) -> None:
    """Nothing due: the sweep reads that and returns, even while another write holds the
    single writer (an idle tick once a second used to queue behind every write)."""
    store = sqlite_store
    held = WriterHeld(store)
    swept: list[object] = []
    sweeper = threading.Thread(target=lambda: swept.append(store.sweep()))
    sweeper.start()
    sweeper.join(5)
    finished = not sweeper.is_alive()
    held.join()
    sweeper.join(10)

    assert finished, "the idle sweep waited for the writer"
    assert len(swept) == 1 and not swept[0].unknown  # type: ignore[attr-defined]
    assert not store._groups._waiting
