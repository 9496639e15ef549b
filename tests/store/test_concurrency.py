"""Races: 16 claimers of one approved request (threads on SQLite, processes on PostgreSQL),
two reviewers deciding at once, and sweepers running side by side.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from store_helpers import LEAD, LEAD2, approved, claim_worker, submit
from store_support import DB

from interlock.clock import FakeClock
from interlock.errors import Conflict
from interlock.store import State, Store

ROUNDS = 200
RACERS = 16


def _race(n: int, fn: Callable[[int], str]) -> list[str]:
    barrier = threading.Barrier(n)

    def run(i: int) -> str:
        barrier.wait()
        return fn(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


def _claim(store: Store, rid: str) -> str:
    try:
        store.claim(rid, agent="ops-agent", lease=60)
        return "won"
    except Conflict as exc:
        return exc.code


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_sixteen_threads_claim_once(store: Store) -> None:
    with ThreadPoolExecutor(RACERS) as pool:
        for _ in range(ROUNDS):
            rid = approved(store).id
            barrier = threading.Barrier(RACERS)

            def run(_: int, rid: str = rid, barrier: threading.Barrier = barrier) -> str:
                barrier.wait()
                return _claim(store, rid)

            outcome = Counter(pool.map(run, range(RACERS)))
            assert outcome == {"won": 1, "already_claimed": RACERS - 1}
    assert store.verify().ok


@pytest.mark.postgres
@pytest.mark.parametrize("db", ["postgres"], indirect=True)
def test_sixteen_processes_claim_once(db: DB, store: Store) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(RACERS)
    results = ctx.Queue()
    queues = [ctx.Queue() for _ in range(RACERS)]
    workers = [
        ctx.Process(target=claim_worker,
                    args=(db.url, db.connect_args, store.clock.now(), barrier, q, results))
        for q in queues
    ]
    for w in workers:
        w.start()
    try:
        for _ in range(ROUNDS):
            rid = approved(store).id
            for q in queues:
                q.put(rid)
            outcome = Counter(results.get(timeout=60)[1] for _ in range(RACERS))
            assert outcome == {"won": 1, "already_claimed": RACERS - 1}
    finally:
        for q in queues:
            q.put(None)
        for w in workers:
            w.join(timeout=30)
        for q in [*queues, results]:
            q.close()
            q.join_thread()
    assert all(w.exitcode == 0 for w in workers)
    assert store.verify().ok


def test_two_reviewers_at_once_one_decision_stands(store: Store) -> None:
    for _ in range(20):
        r = submit(store)

        def decide(i: int, rid: str = r.id, version: int = r.version) -> str:
            try:
                if i == 0:
                    store.vote(rid, reviewer=LEAD, verdict="approve", version=version)
                else:
                    store.vote(rid, reviewer=LEAD2, verdict="deny", version=version)
                return "stood"
            except Conflict as exc:
                return exc.code

        outcome = sorted(_race(2, decide))
        assert outcome[1] == "stood" and outcome[0] in ("stale_version", "not_pending")
        final = store.get(r.id)
        assert final.state in (State.APPROVED, State.DENIED)
        assert len(store.votes(r.id)) == 1
    assert store.verify().ok


def test_sweepers_side_by_side(db: DB, store: Store, clock: FakeClock) -> None:
    others = [db.open(clock) for _ in range(3)]
    try:
        ids = [submit(store).id for _ in range(40)]
        clock.advance(3600)
        sweepers = [store, *others]
        reports = _race(4, lambda i: ",".join(sweepers[i].sweep(limit=15).expired))
        while rest := store.sweep().expired:
            reports.append(",".join(rest))
        expired = [x for rep in reports for x in rep.split(",") if x]
        assert len(expired) == len(set(expired))
        for rid in ids:
            assert store.get(rid).state is State.EXPIRED
            events = [e.event for e in store.timeline(rid)]
            assert events.count("state.expired") == 1
    finally:
        for s in others:
            s.close()
    assert store.verify().ok


def test_verify_while_writers_append(store: Store) -> None:
    for _ in range(20):
        approved(store)
    stop = threading.Event()

    def write() -> None:
        while not stop.is_set():
            store.record("system", "tick", {})

    writer = threading.Thread(target=write)
    writer.start()
    try:
        reports = [store.verify() for _ in range(5)]
    finally:
        stop.set()
        writer.join()
    assert all(r.ok for r in reports), reports
    assert reports[-1].checked >= reports[0].checked


@pytest.mark.postgres
@pytest.mark.parametrize("db", ["postgres"], indirect=True)
def test_writers_beyond_the_write_connections_wait_for_one(store: Store) -> None:
    """More threads writing than the store has write connections: they take turns on
    `WRITERS` connections (a server's 40 worker threads must not open 40, nor exhaust the
    database's connection limit), and every write lands."""
    from interlock.store import pipelined

    writes = store._pipelined
    in_use, peak, lock = [0], [0], threading.Lock()
    take, give = writes.take, writes.give

    def counted_take() -> object:
        conn = take()
        with lock:
            in_use[0] += 1
            peak[0] = max(peak[0], in_use[0])
        return conn

    def counted_give(conn: object, *, keep: bool = True) -> None:
        with lock:
            in_use[0] -= 1
        give(conn, keep=keep)

    writes.take, writes.give = counted_take, counted_give  # type: ignore[method-assign]
    ids = _race(3 * pipelined.WRITERS, lambda i: submit(store, n=i).id)
    assert len(set(ids)) == 3 * pipelined.WRITERS
    assert 1 < peak[0] <= pipelined.WRITERS
    assert len(writes._idle) <= pipelined.WRITERS
    assert writes._permits.qsize() == pipelined.WRITERS  # every permit given back
    assert store.verify().ok


def test_one_idempotency_key_raced_makes_one_request(store: Store) -> None:
    """A client that retries while its first try is still in flight sends the same key
    twice at once: every racer gets the one request, none an error; a racer with another
    body under that key gets the idempotency conflict."""
    for round_ in range(20):
        key = f"retry-{round_}"

        def send(i: int, key: str = key) -> str:
            body = {"n": 1} if i else {"n": 2}  # racer 0 reuses the key for another action
            try:
                return submit(store, idempotency_key=key, **body).id
            except Conflict as exc:
                return exc.code or "conflict"

        answers = _race(8, send)
        ids = {a for a in answers[1:] if a != "idempotency_conflict"}
        stored = [r for r in store.list_requests(agent="ops-agent")
                  if r.idempotency_key == key]
        assert len(stored) == 1, answers
        if answers[0] == "idempotency_conflict":  # a same-body racer stored it first
            assert ids == {stored[0].id}, answers
        else:  # racer 0 stored it: every other racer sent another body under its key
            assert answers[0] == stored[0].id
            assert set(answers[1:]) == {"idempotency_conflict"}, answers
