"""The event loop's group (`run_grouped`): the writes of every call started in one turn of the
loop share one transaction and one COMMIT, which runs in a thread while the loop goes on; no
call returns before that commit; a failing write is rolled back alone, a failed COMMIT fails
the whole group; and a write from a thread waits its turn, in either direction."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from store_helpers import LEAD, action, result
from store_support import HeldCommits, WriterHeld

from interlock.errors import Conflict, NotFound, StoreUnavailable
from interlock.policy.records import Decision
from interlock.store import Request, State, Store


def _commits(store: Store) -> list[str]:
    """The COMMITs SQLite runs on the store's writer connection from now on."""
    seen: list[str] = []
    store._kept().connection.driver_connection.set_trace_callback(  # type: ignore[union-attr]
        lambda sql: seen.append(sql) if sql == "COMMIT" else None)
    return seen


def _submit(store: Store, n: int, key: str | None = None) -> Request:
    extra: dict[str, Any] = {"n": n} if key is None else {"n": n, "idempotency_key": key}
    return store.submit(agent="bot", action=action(**extra), result=result(Decision.ALLOW))


def _noting_thread(store: Store, n: int, names: list[str]) -> Request:
    """A submission that notes the thread it ran in."""
    names.append(threading.current_thread().name)
    return _submit(store, n)


def test_calls_started_in_one_turn_share_one_commit(sqlite_store: Store) -> None:
    store = sqlite_store
    _submit(store, 0)  # warm: the writer connection exists
    commits = _commits(store)

    async def main() -> list[Request]:
        return await asyncio.gather(*(
            store.run_grouped(partial(_submit, store, i)) for i in range(1, 11)))

    made = asyncio.run(main())

    assert commits == ["COMMIT"]
    assert len({r.id for r in made}) == 10
    assert all(store.get(r.id).state is State.ALLOWED for r in made)
    events = [e.event for e in store.audit_entries()]
    assert events.count("submitted") == 11
    report = store.verify()
    assert report.ok, report.problem


def test_no_call_returns_before_its_commit(sqlite_store: Store) -> None:
    store = sqlite_store
    held = store._committer = HeldCommits()
    seen: list[Request] = []

    def write() -> Request:
        seen.append(_submit(store, 1))
        return seen[-1]

    async def main() -> None:
        call = asyncio.ensure_future(store.run_grouped(write))
        await asyncio.sleep(0.1)  # the write ran; its COMMIT is held
        assert seen and not call.done()
        with pytest.raises(NotFound):  # other connections do not see it yet
            await asyncio.to_thread(store.get, seen[0].id)
        held.go.set()
        assert (await call).id == seen[0].id

    asyncio.run(main())
    assert store.get(seen[0].id).state is State.ALLOWED


def test_a_failing_write_is_rolled_back_alone(sqlite_store: Store) -> None:
    store = sqlite_store
    first = _submit(store, 0, key="k")

    async def main() -> tuple[Any, ...]:
        return await asyncio.gather(
            store.run_grouped(partial(_submit, store, 1)),
            store.run_grouped(partial(store.vote, "no-such-id", reviewer=LEAD,
                                      verdict="approve")),
            store.run_grouped(partial(_submit, store, 2, key="k")),  # the key, another body
            store.run_grouped(partial(_submit, store, 0, key="k")),  # a replay: the first
            store.run_grouped(partial(_submit, store, 3)),
            return_exceptions=True,
        )

    one, missing, clash, replay, three = asyncio.run(main())

    assert isinstance(missing, NotFound)
    assert isinstance(clash, Conflict) and clash.code == "idempotency_conflict"
    assert replay.id == first.id
    assert store.get(one.id).state is State.ALLOWED
    assert store.get(three.id).state is State.ALLOWED
    assert [e.event for e in store.audit_entries()].count("submitted") == 3
    assert store.verify().ok


def test_a_failed_commit_fails_the_whole_group_and_leaves_nothing(sqlite_store: Store) -> None:
    store = sqlite_store
    _submit(store, 0)
    held = store._committer = HeldCommits(fail=sqlite3.OperationalError("disk I/O error"))
    made: list[Request] = []

    def write(n: int) -> Request:
        made.append(_submit(store, n))
        return made[-1]

    async def main() -> list[Any]:
        calls = [store.run_grouped(partial(write, i)) for i in range(1, 4)]
        held.go.set()
        return await asyncio.gather(*calls, return_exceptions=True)

    answers = asyncio.run(main())

    assert [type(a) for a in answers] == [StoreUnavailable] * 3
    assert len(made) == 3
    for r in made:
        with pytest.raises(NotFound):
            store.get(r.id)
    assert [e.event for e in store.audit_entries()].count("submitted") == 1
    assert store.verify().ok
    # the writer is free again, and the chain goes on from the head that was committed
    store._committer = None
    after = asyncio.run(store.run_grouped(partial(_submit, store, 9)))
    assert store.get(after.id).state is State.ALLOWED
    assert store.verify().ok


def test_a_call_while_a_thread_writes_runs_in_the_executor(sqlite_store: Store) -> None:
    store = sqlite_store
    held = WriterHeld(store)
    ran_in: list[str] = []
    write = partial(_noting_thread, store, 1, ran_in)

    async def main() -> Request:
        call = asyncio.ensure_future(store.run_grouped(write))
        while len(store._groups._waiting) < 1:  # it queued behind the thread's write
            await asyncio.sleep(0.01)
        held.release.set()
        return await call

    made = asyncio.run(main())
    held.join()

    assert ran_in and ran_in[0] != threading.current_thread().name
    assert store.get(made.id).state is State.ALLOWED
    events = [e.event for e in store.audit_entries()]
    assert events[-3:] == ["leader", "submitted", "state.allowed"]
    assert store.verify().ok


def test_another_process_holding_the_write_lock_never_blocks_the_loop(
    sqlite_store: Store, tmp_path: Path
) -> None:
    """SQLite's busy handler sleeps; on the loop it would stall every request. A call that
    meets another connection's write lock waits for it in a thread instead."""
    store = sqlite_store
    _submit(store, 0)
    other = sqlite3.connect(tmp_path / "interlock.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    ran_in: list[str] = []
    write = partial(_noting_thread, store, 1, ran_in)

    async def main() -> Request:
        call = asyncio.ensure_future(store.run_grouped(write))
        ticks = 0
        while not ran_in and ticks < 500:  # the loop turns while the call waits for the lock
            await asyncio.sleep(0.01)
            ticks += 1
        await asyncio.sleep(0.1)
        assert not call.done()
        other.execute("COMMIT")
        made = await call
        assert ticks >= 1
        return made

    made = asyncio.run(main())
    other.close()

    assert ran_in[0] != threading.current_thread().name
    assert store.get(made.id).state is State.ALLOWED
    assert store.verify().ok
    # and the next call, the lock free, runs on the loop again
    loop_thread: list[str] = []
    asyncio.run(store.run_grouped(partial(_noting_thread, store, 2, loop_thread)))
    assert loop_thread == [threading.current_thread().name]


def test_a_thread_write_waits_for_the_loop_group_to_commit(sqlite_store: Store) -> None:
    store = sqlite_store
    held = store._committer = HeldCommits()
    from_thread: list[Request] = []

    async def main() -> Request:
        call = asyncio.ensure_future(store.run_grouped(partial(_submit, store, 1)))
        await asyncio.sleep(0.05)  # the loop's group is committing (held)
        writer = threading.Thread(target=lambda: from_thread.append(_submit(store, 2)))
        writer.start()
        while len(store._groups._waiting) < 1:
            await asyncio.sleep(0.01)
        assert not from_thread
        held.go.set()
        made = await call
        await asyncio.to_thread(writer.join, 10)
        return made

    made = asyncio.run(main())

    assert len(from_thread) == 1
    assert store.get(made.id).state is State.ALLOWED
    assert store.get(from_thread[0].id).state is State.ALLOWED
    ids = [e.request_id for e in store.audit_entries() if e.event == "submitted"]
    assert ids == [made.id, from_thread[0].id]
    assert store.verify().ok


def test_a_loop_write_outside_run_grouped_while_the_loop_leads_is_refused(
    sqlite_store: Store,
) -> None:
    """The loop cannot wait for its own group's commit: a plain write from it then is a bug,
    refused at once instead of deadlocking the server."""
    store = sqlite_store
    store._committer = HeldCommits()
    errors: list[BaseException] = []

    async def main() -> None:
        call = asyncio.ensure_future(store.run_grouped(partial(_submit, store, 1)))
        await asyncio.sleep(0.05)
        try:
            _submit(store, 2)
        except RuntimeError as exc:
            errors.append(exc)
        store._committer.go.set()  # type: ignore[union-attr]
        await call

    asyncio.run(main())
    assert len(errors) == 1 and "inside another write" in str(errors[0])


def test_run_grouped_on_every_backend(store: Store) -> None:
    """PostgreSQL has no single writer: the calls run in the executor, each its own write."""

    async def main() -> list[Request]:
        return await asyncio.gather(*(
            store.run_grouped(partial(_submit, store, i)) for i in range(5)))

    made = asyncio.run(main())
    assert all(store.get(r.id).state is State.ALLOWED for r in made)
    assert store.verify().ok


def test_after_commit_runs_after_the_groups_commit_and_not_if_it_fails(
    sqlite_store: Store,
) -> None:
    store = sqlite_store
    said: list[str] = []
    store.after_commit(lambda: said.append("outside: at once"))
    assert said == ["outside: at once"]

    def write(n: int) -> Request:
        made = _submit(store, n)
        store.after_commit(lambda: said.append(f"after {n}"))
        return made

    async def main(fail: BaseException | None) -> Any:
        held = store._committer = HeldCommits(fail=fail)
        before = list(said)
        call = asyncio.ensure_future(store.run_grouped(partial(write, 1 if fail is None else 2)))
        await asyncio.sleep(0.05)
        assert said == before  # written, not committed: not yet
        held.go.set()
        return await asyncio.gather(call, return_exceptions=True)

    asyncio.run(main(None))
    assert said == ["outside: at once", "after 1"]
    (failed,) = asyncio.run(main(sqlite3.OperationalError("disk I/O error")))
    assert isinstance(failed, StoreUnavailable)
    assert said == ["outside: at once", "after 1"]


def test_a_call_that_wrote_then_failed_answers_after_the_commit(sqlite_store: Store) -> None:
    store = sqlite_store
    held = store._committer = HeldCommits()
    made: list[Request] = []

    def write_then_fail() -> None:
        made.append(_submit(store, 1))
        raise LookupError("after the write")

    async def main() -> None:
        call = asyncio.ensure_future(store.run_grouped(write_then_fail))
        await asyncio.sleep(0.05)
        assert made and not call.done()  # its write is not durable yet: no answer either
        held.go.set()
        with pytest.raises(LookupError):
            await call

    asyncio.run(main())
    assert store.get(made[0].id).state is State.ALLOWED  # written, committed; the error stands
