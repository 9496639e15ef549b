"""The store's machinery: opening a database, write transactions, the one transition function.

Every write runs in `_write()`, which appends the transaction's audit entries to the chain
before commit; `_transition` is the only code that changes a state.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import queue
import re
import sqlite3
import threading
from collections.abc import Callable, Generator, Iterator, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, TypeVar

import sqlalchemy as sa

from interlock.clock import Clock, SystemClock
from interlock.errors import BadInput, Conflict, NotFound, StoreUnavailable
from interlock.policy.records import Decision, PolicyResult, Requirements, Risk
from interlock.store import audit as chain
from interlock.store import group, known, migrate, pipelined
from interlock.store import schema as t
from interlock.store.backends import Backend, backend_for_url
from interlock.store.records import (
    AuditEntry,
    Request,
    State,
    VerifyReport,
    allowed,
)
from interlock.store.tx import Row, Statements, Tx

_B32 = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


#: (milliseconds, random part) of the newest id this process made, and its lock.
_last_id = [0, 0]
_id_lock = threading.Lock()


def new_id(now: float) -> str:
    """A ULID: 48 bits of milliseconds then 80 random bits, Crockford base32, sortable.

    Monotonic within a process: an id made in the same millisecond as the one before takes
    that one's random part plus a random step, so ids of one process sort in the order they
    were made (newest-first lists rely on it), and stay hard to guess."""
    ms = int(now * 1000)
    with _id_lock:
        last_ms, last_rand = _last_id
        rand = last_rand + 1 + int.from_bytes(os.urandom(2), "big") if ms == last_ms else 0
        if ms != last_ms or rand >> 80:  # a new millisecond (or, never in practice, overflow)
            rand = int.from_bytes(os.urandom(10), "big") >> 1  # room to count up
        _last_id[0], _last_id[1] = ms, rand
    value = (ms << 80) | rand
    out = []
    for _ in range(26):
        out.append(_B32[value & 31])
        value >>= 5
    return "".join(reversed(out))


def _safe(url: str) -> str:
    """A database URL with any password masked, for messages."""
    return sa.engine.make_url(url).render_as_string(hide_password=True)


def _outage(exc: BaseException) -> bool:
    """Whether `exc` says the database cannot be reached or written right now (a lost
    connection, an exhausted pool, a full disk, a lock held past the busy timeout, a
    deadlock), as opposed to a statement it refused: worth a retry, not a bug report."""
    if isinstance(exc, sa.exc.TimeoutError):  # the pool had no connection to give
        return True
    if isinstance(exc, sa.exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        if exc.orig is None:
            return isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError)
        exc = exc.orig
    if isinstance(exc, sqlite3.OperationalError):
        # SQLITE_ERROR is a statement SQLite refused (no such table, a syntax error): a bug.
        # The rest (busy, locked, I/O error, full, cannot open, read-only) is the database.
        return getattr(exc, "sqlite_errorname", None) != "SQLITE_ERROR"
    if type(exc).__module__.startswith("psycopg"):
        import psycopg

        return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
    return False


def _unavailable(exc: BaseException) -> StoreUnavailable:
    orig = getattr(exc, "orig", None) or exc
    detail = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    return StoreUnavailable(f"the database cannot be used right now ({detail}); try again")


def dumps(obj: Any) -> str:
    """Canonical JSON, as everything is stored."""
    return chain.canonical(obj)


def digest_of(action: Mapping[str, Any], args: Any) -> str:
    """sha256 of the canonical JSON of the action with `args` as its args."""
    return chain.sha256_hex(dumps({**action, "args": args}))


#: An audit hash as `audit anchor` prints it: sha256 in lowercase hex.
_HASH = re.compile(r"[0-9a-f]{64}")

# Statements built once: values travel as parameters, so each call reuses the compiled form.
_LOAD = sa.select(t.requests).where(t.requests.c.id == sa.bindparam("rid"))
_LOAD_FOR_UPDATE = _LOAD.with_for_update()
_CAS = t.requests.update().where(
    t.requests.c.id == sa.bindparam("old_id"),
    t.requests.c.state == sa.bindparam("old_state"),
    t.requests.c.version == sa.bindparam("old_version"),
)
_HEAD = (
    sa.select(t.audit_head.c.seq, t.audit_head.c.hash)
    .where(t.audit_head.c.id == 1)
    .with_for_update()
)
_SET_HEAD = t.audit_head.update().where(t.audit_head.c.id == 1)
_MOVE_HEAD = t.audit_head.update().where(
    t.audit_head.c.id == 1,
    t.audit_head.c.seq == sa.bindparam("old_seq"),
    t.audit_head.c.hash == sa.bindparam("old_hash"),
)
_INSERT_AUDIT = t.audit.insert()


T = TypeVar("T")
log = logging.getLogger("interlock.store")


@dataclass(eq=False)
class LoopGroup:
    """The event loop's open transaction on the single writer (see `StoreBase.run_grouped`)."""

    loop: asyncio.AbstractEventLoop
    conn: sa.Connection
    trans: sa.RootTransaction
    release: Callable[[], None]
    """Gives the in-process write lock back."""
    done: asyncio.Future[None]
    """Set once the transaction has committed, or with the reason it did not."""
    after: list[Callable[[], None]] = field(default_factory=list)
    """What its writers asked to run once it has committed (`StoreBase.after_commit`)."""


class StoreBase:
    """Connections, transactions, reads, and the audit trail; subclasses add the lifecycle."""

    def __init__(
        self,
        url: str,
        *,
        clock: Clock | None = None,
        connect_args: dict[str, Any] | None = None,
        auto_upgrade: bool = False,
        create: bool = True,
    ) -> None:
        self.url = url
        self.clock: Clock = clock or SystemClock()
        self.backend: Backend = backend_for_url(url)
        self.engine = self.backend.create_engine(url, connect_args)
        self._statements = Statements(self.engine.dialect)
        self._built: dict[str, Any] = {}
        self._writer: sa.Connection | None = None
        #: (seq, hash) of the audit head as this store last wrote it (SQLite's chaining).
        self._head: tuple[int, str] | None = None
        self._groups = group.Groups()
        #: The event loop's group accepting writes (`run_grouped`), if one is open.
        self._loop_group: LoopGroup | None = None
        #: Set while that group's COMMIT runs, and resolved once the writer is free again.
        self._loop_commit: asyncio.Future[None] | None = None
        #: The thread running a `run_grouped` call's writes (the loop's), while it runs them.
        self._loop_writer: int | None = None
        #: Whether that call has written into the loop's group yet.
        self._loop_wrote = False
        #: One thread for the loop groups' COMMITs, made on first use.
        self._committer: ThreadPoolExecutor | None = None
        #: PostgreSQL's pipelined writes, on driver connections of their own.
        self._pipelined = pipelined.Pipelined(self)
        #: Requests as this process last committed them (`_known`).
        self._known_rows = known.KnownRows()
        try:
            migrate.ensure(self.engine, self.backend, auto_upgrade=auto_upgrade,
                           create=create)
        except sa.exc.DBAPIError as exc:
            self.engine.dispose()
            raise StoreUnavailable(
                f"cannot open the database `{_safe(url)}`: {str(exc.orig).strip()}"
            ) from None
        except BaseException:
            self.engine.dispose()
            raise

    def close(self) -> None:
        """Release the writer's connection and every pooled one."""
        if self._committer is not None:
            self._committer.shutdown(wait=True)
        with self.backend.write_lock():
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        self._pipelined.close()
        self.engine.dispose()

    # -- transactions ---------------------------------------------------------------

    @contextmanager
    def _write(self, *, pipelined: bool = False) -> Iterator[Tx]:
        """A write transaction that chains its audit entries before commit.

        `pipelined` (for code that reads results only through `Tx.run`/`fetch_row` and never
        needs a rowcount at once): on PostgreSQL the statements are pipelined, so the
        transaction costs a round trip per result it waits for, not one per statement."""
        try:
            if pipelined and self.backend.pipeline:
                with self._pipelined.write() as tx:
                    yield tx
                if tx.rows:  # committed
                    self._known_rows.remember(tx.rows)
                return
            if self.backend.single_writer:
                if self._loop_writer == threading.get_ident():
                    with self._in_loop_group() as tx:
                        yield tx
                    return
                if self._groups.nested():
                    raise RuntimeError("a store write cannot run inside another write")
                member = self._groups.join()
                if member is not None:
                    member.turn.wait()
                    if member.leads:
                        self._groups.take()
                        member = None
                try:
                    with self._leading() if member is None else self._joined(member) as tx:
                        yield tx
                finally:
                    if member is None:
                        self._groups.finish()
                return
            with self.backend.write_lock(), self._begin_write() as conn:
                tx = Tx(link=conn, now=self.clock.now(), statements=self._statements,
                        pipeline=self.backend.pipeline)
                with self._flushed(tx):
                    yield tx
        except Exception as exc:
            if _outage(exc):
                raise _unavailable(exc) from exc
            raise

    @contextmanager
    def _flushed(self, tx: Tx) -> Iterator[Tx]:
        """The caller's statements, then the audit chain (`_flush`); the cursor is closed
        either way."""
        try:
            yield tx
            self._flush(tx)
        finally:
            if tx.cursor is not None:
                tx.cursor.close()

    @contextmanager
    def _leading(self) -> Iterator[Tx]:
        """A single writer's transaction (see `interlock.store.group`): this write, then each
        write that arrived meanwhile, then one COMMIT for all of them. The caller hands the
        lead on (`Groups.finish`) once this returns."""
        with self.backend.write_lock():
            conn = self._kept()
            begun = conn.begin()
            trans: sa.RootTransaction | None = begun
            head = self._head
            tx = Tx(link=conn, now=self.clock.now(), statements=self._statements)
            failure: BaseException | None = None
            try:
                with self._flushed(tx):
                    yield tx
            except BaseException as exc:  # raised below, once the joined writes are served
                failure = exc
                self._head = head
                self._rollback(conn, begun)
                trans = None
            try:
                first = self._groups.next()
                if first is not None:
                    if trans is None:
                        conn = self._kept()
                        trans = conn.begin()
                    self._groups.relay(first)
                if trans is not None:
                    driver = conn.connection.driver_connection
                    if not getattr(driver, "in_transaction", True):
                        # SQLite rolled it all back itself (disk full, I/O error): a COMMIT
                        # now would answer for writes that are gone.
                        raise StoreUnavailable("the database rolled the transaction back")
                    trans.commit()
            except BaseException as exc:
                self._head = None
                if trans is not None:
                    self._rollback(conn, trans)
                while self._groups.next() is not None:  # close the group: fail them all
                    pass
                for member in self._groups.group():
                    member.failed = exc
                    if not member.started:
                        member.start()
                failure = failure or exc
            finally:
                for member in self._groups.group():
                    member.done.set()
            if failure is not None:
                raise failure

    @contextmanager
    def _joined(self, member: group.Member) -> Iterator[Tx]:
        """A write inside the transaction another writer leads, in a savepoint of its own;
        it returns once that transaction has committed."""
        if member.failed is not None:
            raise StoreUnavailable(f"the write could not start: {member.failed}")
        try:
            with self._savepoint(self._kept()) as tx:
                yield tx
        finally:
            self._groups.pass_on()
        member.done.wait()
        if member.failed is not None:
            raise StoreUnavailable(
                f"the commit of a group of writes failed: {member.failed}"
            ) from member.failed

    @contextmanager
    def _savepoint(self, conn: sa.Connection) -> Iterator[Tx]:
        """One write inside a group's open transaction, in a savepoint of its own: if it
        fails, it alone is rolled back, the audit head this store knows with it."""
        driver = conn.connection.driver_connection
        assert driver is not None
        head = self._head
        tx = Tx(link=conn, now=self.clock.now(), statements=self._statements)
        driver.execute("SAVEPOINT interlock_write")
        try:
            with self._flushed(tx):
                yield tx
        except BaseException:
            self._head = head
            driver.execute("ROLLBACK TO interlock_write")
            driver.execute("RELEASE interlock_write")
            raise
        driver.execute("RELEASE interlock_write")

    # -- the event loop's group -------------------------------------------------------

    async def run_grouped(self, fn: Callable[[], T], executor: Executor | None = None) -> T:
        """Run `fn`, which writes through this store, on the running event loop, its writes
        joining the loop's open transaction; return once that transaction has committed.

        For an event-loop server on a single writer (SQLite) this costs far less than a
        thread per call: the writes of every call started in one turn of the loop share one
        transaction, a savepoint each, and only its COMMIT (the fsync) goes to a thread, once
        per group, while the loop serves other requests. Calls that arrive during the COMMIT
        wait for it and form the next group. Nothing is answered before its commit; a write
        that fails is rolled back to its savepoint alone, and a failed COMMIT fails every call
        of the group with `StoreUnavailable`.

        `fn` runs in `executor` instead, the usual way, where the backend has no single writer,
        a thread's write holds the writer at the moment (the sweeper, a decision made in the
        thread pool), or another process holds the database's write lock. `fn` must not wait
        on the event loop. Its reads outside its writes see only committed data, as in a
        thread; what must not be seen before the commit goes through `after_commit`."""
        loop = asyncio.get_running_loop()
        if not self.backend.single_writer:
            return await loop.run_in_executor(executor, fn)
        while (pending := self._loop_commit) is not None and pending.get_loop() is loop:
            await pending
        open_group = self._loop_group
        if open_group is None or open_group.loop is not loop:
            open_group = self._open_loop_group(loop)
            if open_group is None:
                return await loop.run_in_executor(executor, fn)
        failure: Exception | None = None
        self._loop_writer, self._loop_wrote = threading.get_ident(), False
        try:
            result = fn()
        except Exception as exc:
            failure = exc
        finally:
            self._loop_writer = None
        if failure is not None and not self._loop_wrote:
            raise failure
        # what it wrote is answered after its commit, an error after a write too
        await asyncio.shield(open_group.done)
        if failure is not None:
            raise failure
        return result

    def after_commit(self, fn: Callable[[], None]) -> None:
        """Run `fn` once what the calling thread wrote is committed: at once, except in a
        `run_grouped` call, where it runs on the loop after the group's COMMIT, and not at all
        if that COMMIT fails. For what must not be seen before the commit (waking waiters)."""
        opened = self._loop_group
        if opened is not None and self._loop_writer == threading.get_ident():
            opened.after.append(fn)
        else:
            fn()

    def _open_loop_group(self, loop: asyncio.AbstractEventLoop) -> LoopGroup | None:
        """Lead the single writer from the loop and begin its transaction, whose COMMIT is
        scheduled for the end of this turn of the loop; None if someone else writes."""
        if not self._groups.try_lead():
            return None
        release = self.backend.try_write_lock()
        if release is None:  # a writer outside the groups (the delivery log) holds it
            self._groups.finish()
            return None
        try:
            conn = self._kept()
            trans = self.backend.begin_now(conn)
        except BaseException as exc:
            release()
            self._groups.finish()
            if _outage(exc):
                raise _unavailable(exc) from exc
            raise
        if trans is None:  # another process writes: wait for it in a thread, not on the loop
            release()
            self._groups.finish()
            return None
        done: asyncio.Future[None] = loop.create_future()
        # a call whose own write failed does not wait for the commit: nobody may read its end
        done.add_done_callback(lambda f: f.cancelled() or f.exception())
        opened = self._loop_group = LoopGroup(
            loop=loop, conn=conn, trans=trans, release=release, done=done)
        loop.call_soon(self._commit_loop_group, opened)
        return opened

    @contextmanager
    def _in_loop_group(self) -> Iterator[Tx]:
        """A write of a `run_grouped` call, in the loop's open transaction."""
        opened = self._loop_group
        assert opened is not None, "a loop-grouped write outside its group"
        driver = opened.conn.connection.driver_connection
        if not getattr(driver, "in_transaction", True):
            # SQLite rolled the group back itself (disk full, I/O error): a write now would
            # commit on its own, outside the group, and the group's COMMIT fail.
            raise StoreUnavailable("the database rolled the transaction back")
        self._loop_wrote = True
        with self._savepoint(opened.conn) as tx:
            yield tx

    def _commit_loop_group(self, opened: LoopGroup) -> None:
        """Close the group to new writes and send its COMMIT to the committer thread."""
        loop = opened.loop
        self._loop_group = None
        free = self._loop_commit = loop.create_future()
        if self._committer is None:
            self._committer = ThreadPoolExecutor(1, thread_name_prefix="interlock-commit")

        def commit() -> None:
            driver = opened.conn.connection.driver_connection
            if not getattr(driver, "in_transaction", True):
                raise StoreUnavailable("the database rolled the transaction back")
            opened.trans.commit()

        def committed(result: asyncio.Future[None]) -> None:
            exc = result.exception()
            try:
                if exc is not None:
                    self._head = None
                    self._rollback(opened.conn, opened.trans)
            finally:
                opened.release()
                self._groups.finish()
                self._loop_commit = None
                free.set_result(None)
            if exc is None:
                for announce in opened.after:
                    try:
                        announce()
                    except Exception:  # one announcement failing must not stop the others
                        log.exception("after the commit of a group of writes")
                opened.done.set_result(None)
            elif isinstance(exc, StoreUnavailable):
                opened.done.set_exception(exc)
            else:
                opened.done.set_exception(
                    _unavailable(exc) if _outage(exc)
                    else StoreUnavailable(f"the commit of a group of writes failed: {exc}"))

        asyncio.ensure_future(loop.run_in_executor(self._committer, commit)).add_done_callback(
            committed)

    # -- requests this process wrote last -------------------------------------------

    def _known(self, request_id: str, usable: Callable[[Row], bool]) -> Row | None:
        """The row this process last committed for a request, where the backend pays a round
        trip for each load (PostgreSQL) and `usable` says a write may start from it.

        Only a write that changes the request may start from it: every change to a request
        moves its version, and the write's compare-and-set checks state and version, so if
        the request moved on elsewhere (another process), the write fails with
        `state_changed` and rolls back whole; the caller then `_forget`s the row and writes
        again from a loaded one. A refusal is never answered from a known row."""
        if not self.backend.pipeline:
            return None
        row = self._known_rows.get(request_id)
        return None if row is None or not usable(row) else row

    def _forget(self, request_id: str) -> None:
        self._known_rows.forget(request_id)

    def _kept(self) -> sa.Connection:
        """The single writer's connection, opened again if it was closed or invalidated."""
        kept = self._writer
        if kept is None or kept.closed or kept.invalidated:
            kept = self._writer = self.engine.connect()
        return kept

    def _rollback(self, conn: sa.Connection, trans: sa.RootTransaction) -> None:
        try:
            if trans.is_active:
                trans.rollback()
        except Exception:
            conn.invalidate()
        if conn.invalidated:
            conn.close()
            self._writer = None

    @contextmanager
    def _begin_write(self) -> Iterator[sa.Connection]:
        """A write transaction's connection. Where the backend has a single writer (SQLite),
        one connection is kept for all writes, taken under the write lock: no pool checkout,
        reset or return per transaction."""
        if not self.backend.single_writer:
            with self.engine.begin() as pooled:
                yield pooled
            return
        conn = self._kept()
        try:
            with conn.begin():
                yield conn
        except BaseException:
            if conn.invalidated:
                conn.close()
                self._writer = None
            raise

    def _statement(self, name: str, build: Callable[[], Any]) -> Any:
        """A backend-specific statement, built once per store."""
        stmt = self._built.get(name)
        if stmt is None:
            stmt = self._built[name] = build()
        return stmt

    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        try:
            with self.engine.connect().execution_options(interlock_read=True) as conn:
                yield conn
        except Exception as exc:
            if _outage(exc):
                raise _unavailable(exc) from exc
            raise

    def _flush(self, tx: Tx) -> None:
        writes: list[tuple[Any, Any]] = []
        if tx.entries and self.backend.append is not None:
            writes.append((self.backend.append, {"packed": chain.packed(tx.entries)}))
        elif tx.entries:
            writes.append((_INSERT_AUDIT, self._chain(tx)))
        if not tx.deferred and not self.backend.pipeline:
            for stmt, params in writes:
                tx.run(stmt, params)
            return
        # PostgreSQL: the deferred compare-and-sets and the appends travel in one pipeline,
        # one round trip while the chain head is held; each CAS is checked before commit.
        driver = tx.conn.connection.driver_connection
        assert driver is not None
        checks = []
        with driver.pipeline():
            for stmt, params in tx.inserts:
                tx.run(stmt, params)
            for stmt, params, miss in tx.deferred:
                cur = tx.conn.connection.cursor()
                tx.run(stmt, params, cursor=cur)
                checks.append((cur, miss))
            for stmt, params in writes:
                tx.run(stmt, params)
        for cur, miss in checks:
            count = cur.rowcount
            cur.close()
            if miss is not None and count != 1:
                raise miss

    def _chain(self, tx: Tx) -> list[dict[str, Any]]:
        """The transaction's audit rows, chained after the head, which is moved to the last.

        The head row is what keeps the chain linear when several processes write at once.
        The head this store wrote last is moved only if it is still the head, so the common
        case reads nothing; when another writer (or a rollback) moved it meanwhile, it is read.
        """
        if self._head is not None:
            seq, prev = self._head
            rows = chain.chain(seq, prev, tx.entries)
            last = rows[-1]
            moved = tx.run(_MOVE_HEAD, {"seq": last["seq"], "hash": last["hash"],
                                        "old_seq": seq, "old_hash": prev})
            if moved.rowcount == 1:
                self._head = (last["seq"], last["hash"])
                return rows
        head = tx.fetch_row(_HEAD, {})
        assert head is not None, "the audit chain head row is missing"
        rows = chain.chain(int(head["seq"]), head["hash"], tx.entries)
        last = rows[-1]
        tx.run(_SET_HEAD, {"seq": last["seq"], "hash": last["hash"]})
        self._head = (last["seq"], last["hash"])
        return rows

    # -- requests: loading and the one state-changing function ----------------------

    def _load(self, conn: sa.Connection | Tx, request_id: str, *, lock: bool) -> Row:
        query = _LOAD_FOR_UPDATE if lock else _LOAD
        if isinstance(conn, Tx):
            found = conn.fetch_row(query, {"rid": request_id})
        else:
            mapping = conn.execute(query, {"rid": request_id}).mappings().first()
            found = None if mapping is None else dict(mapping)
        if found is None:
            raise NotFound(f"no request `{request_id}`")
        return found

    def _transition(
        self,
        tx: Tx,
        row: Row,
        to: State,
        *,
        actor: str,
        data: dict[str, Any] | None = None,
        values: dict[str, Any] | None = None,
        new_request: bool = False,
    ) -> Row:
        """Move a request to `to` if the chart allows it, by compare-and-set on its state
        and version; audit it in the same transaction. Returns the new row.

        `new_request`: `row` is a request being submitted, not yet stored; nothing is
        written but the audit entry, and the caller inserts the row it ends up with, so a
        request submitted and claimed at once is one write instead of three."""
        current = State(row["state"])
        rid = row["id"]
        if not allowed(current, to):
            raise Conflict(
                f"request `{rid}` is {current.value}: {current.value} -> {to.value} "
                "is not allowed",
                code="invalid_transition",
            )
        new = {**row, **(values or {})}
        new.update(state=to.value, version=row["version"] + 1, updated_at=tx.now)
        if not new_request:
            self._cas(tx, row, new)
        tx.rows[rid] = new
        tx.audit(
            actor, f"state.{to.value}", {"from": current.value, "to": to.value, **(data or {})},
            request_id=rid, digest=new["digest"],
        )
        return new

    def _bump(
        self, tx: Tx, row: Row, *, actor: str, event: str, data: dict[str, Any],
        values: dict[str, Any],
    ) -> Row:
        """A change a reviewer can see that keeps the state: new version, audited."""
        new = {**row, **values}
        new.update(version=row["version"] + 1, updated_at=tx.now)
        self._cas(tx, row, new)
        tx.rows[row["id"]] = new
        tx.audit(actor, event, data, request_id=row["id"], digest=new["digest"])
        return new

    def _cas(self, tx: Tx, old: Row, new: Row) -> None:
        changed = {k: v for k, v in new.items() if old.get(k) != v}
        changed.update(old_id=old["id"], old_state=old["state"], old_version=old["version"])
        tx.later(_CAS, changed, Conflict(
            f"request `{old['id']}` changed meanwhile (it was {old['state']} "
            f"at version {old['version']})",
            code="state_changed",
        ))

    # -- reads ---------------------------------------------------------------------

    def get(self, request_id: str) -> Request:
        """One request."""
        with self._read() as conn:
            return to_request(self._load(conn, request_id, lock=False))

    def list_requests(
        self,
        *,
        state: State | None = None,
        agent: str | None = None,
        batch_id: str | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> list[Request]:
        """Requests oldest first, filtered; page with `after` (the last id seen)."""
        q = sa.select(t.requests).order_by(t.requests.c.id).limit(limit)
        if state is not None:
            q = q.where(t.requests.c.state == state.value)
        if agent is not None:
            q = q.where(t.requests.c.agent == agent)
        if batch_id is not None:
            q = q.where(t.requests.c.batch_id == batch_id)
        if after is not None:
            q = q.where(t.requests.c.id > after)
        with self._read() as conn:
            return [to_request(dict(r)) for r in conn.execute(q).mappings()]

    # -- audit ---------------------------------------------------------------------

    def record(
        self, actor: str, event: str, data: dict[str, Any], *, request_id: str | None = None
    ) -> None:
        """Append an event that is not a request change (policy load, pause, ...)."""
        with self._write() as tx:
            tx.audit(actor, event, data, request_id=request_id)

    def timeline(self, request_id: str) -> list[AuditEntry]:
        """Every audit entry of one request, in order."""
        q = sa.text(
            f"SELECT {chain.ENTRY_COLUMNS} FROM audit WHERE request_id = :rid ORDER BY seq"
        )
        with self._read() as conn:
            return [chain.to_entry(r) for r in conn.execute(q, {"rid": request_id})]

    def audit_entries(self, *, after: int = 0, limit: int | None = None) -> Iterator[AuditEntry]:
        """Audit entries in order, streamed."""
        for rows in self._audit_batches(after=after, limit=limit):
            for row in rows:
                yield chain.to_entry(row)

    def audit_head(self) -> tuple[int, str]:
        """(seq, hash) of the newest entry; the hash is what `audit anchor` prints."""
        with self._read() as conn:
            row = conn.execute(
                sa.select(t.audit_head.c.seq, t.audit_head.c.hash).where(t.audit_head.c.id == 1)
            ).one()
            return int(row.seq), str(row.hash)

    def verify(
        self, *, anchor: str | None = None, progress: Callable[[int], None] | None = None
    ) -> VerifyReport:
        """Walk the chain up to the head as it is now; see `interlock.store.audit.verify`.

        Entries appended meanwhile are left for the next walk, so writers never disturb it.
        `anchor` is taken as pasted (spaces, capitals); one that is not a sha256 in hex is
        BadInput, not a broken trail."""
        if anchor is not None:
            anchor = anchor.strip().lower()
            if not _HASH.fullmatch(anchor):
                raise BadInput(f"an anchor is the 64 hex digits `interlock audit anchor` "
                               f"printed, not `{anchor[:80]}`")
        head = self.audit_head()

        def stored_prev(seq: int) -> str | None:
            with self._read() as conn:
                return conn.execute(sa.select(t.audit.c.prev_hash).where(
                    t.audit.c.seq == seq)).scalar()

        batches = self._audit_batches(columns=chain.VERIFY_COLUMNS, upto=head[0])
        if self.backend.single_writer:
            # A local file: a page is read in less time than a thread hand-off costs, and
            # a reader thread would only contend for the GIL (10-20% slower, measured).
            with closing(batches):
                return chain.verify((row for page in batches for row in page), head=head,
                                    anchor=anchor, progress=progress, stored_prev=stored_prev)
        pages: queue.Queue[list[Any] | BaseException | None] = queue.Queue(maxsize=3)

        def fetch() -> None:
            # Over the network, reading the next page overlaps hashing the current one.
            try:
                for page in batches:
                    pages.put(page)
                pages.put(None)
            except BaseException as exc:  # handed to the walking thread
                pages.put(exc)

        def rows() -> Iterator[Any]:
            while (page := pages.get()) is not None:
                if isinstance(page, BaseException):
                    raise page
                yield from page

        reader = threading.Thread(target=fetch, name="interlock-audit-verify", daemon=True)
        reader.start()
        try:
            return chain.verify(rows(), head=head, anchor=anchor, progress=progress,
                                stored_prev=stored_prev)
        finally:
            while reader.is_alive():  # let the reader finish if the walk stopped early
                with suppress(queue.Empty):
                    pages.get(timeout=0.05)
            reader.join()

    def _audit_batches(
        self, *, after: int = 0, limit: int | None = None, size: int = 20_000,
        columns: str = chain.ENTRY_COLUMNS, upto: int | None = None,
    ) -> Generator[list[Any], None, None]:
        # Keyset pages on the primary key: constant memory, no long-lived cursor.
        # The driver's own cursor: plain tuples, no per-row Row objects (verify walks millions).
        remaining = limit
        bound = "" if upto is None else f" AND seq <= {int(upto)}"
        with self._read() as conn:
            conn.exec_driver_sql("SELECT 1")  # begin the read transaction
            cur = conn.connection.cursor()
            try:
                if upto is not None and limit is None:
                    # seq-range pages: each costs what it holds whatever the planner knows
                    yield from chain.pages(cur, after=after, upto=upto, columns=columns)
                    return
                while remaining is None or remaining > 0:
                    n = size if remaining is None else min(size, remaining)
                    cur.execute(
                        f"SELECT {columns} FROM audit WHERE seq > {int(after)}{bound} "
                        f"ORDER BY seq LIMIT {int(n)}"
                    )
                    rows = list(cur.fetchall())
                    if not rows:
                        return
                    yield rows
                    after = rows[-1][0]
                    if remaining is not None:
                        remaining -= len(rows)
            finally:
                cur.close()

    def export_jsonl(self) -> Iterator[str]:
        """The trail as JSON lines: each entry as hashed, with its prev_hash and hash."""
        for batch in self._audit_batches(upto=self.audit_head()[0]):
            for row in batch:
                yield f'{{"entry":{row[1]},"hash":"{row[3]}","prev_hash":"{row[2]}"}}'


# A policy result and its requirements are read-only once built, and the same few texts recur
# (one per rule that gates), so each distinct text is parsed once.
@functools.lru_cache(maxsize=512)
def result_of(text: str) -> PolicyResult:
    """The PolicyResult stored as `text`."""
    return PolicyResult.from_json(json.loads(text))


@functools.lru_cache(maxsize=512)
def requirements_of(text: str) -> Requirements:
    """The Requirements stored as `text`."""
    return Requirements.from_json(json.loads(text))


def to_request(row: Row, *, action: dict[str, Any] | None = None) -> Request:
    """A Request from a requests row; `action`: its action, if the caller parsed it already
    (the Request then holds that very dict)."""
    reqs = row["requirements"]
    checkpoint = row["checkpoint"]
    return Request(
        id=row["id"],
        agent=row["agent"],
        action=json.loads(row["action"]) if action is None else action,
        result=result_of(row["result"]),
        policy_hash=row["policy_hash"],
        state=State(row["state"]),
        version=row["version"],
        digest=row["digest"],
        risk=Risk(row["risk"]),
        decision=Decision(row["decision"]),
        requirements=None if reqs is None else requirements_of(reqs),
        progress=json.loads(row["progress"]),
        final_args=json.loads(row["final_args"]),
        checkpoint=None if checkpoint is None else json.loads(checkpoint),
        idempotency_key=row["idempotency_key"],
        batch_id=row["batch_id"],
        revision_of=row["revision_of"],
        reason=row["reason"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        deadline=row["deadline"],
        ttl_expires_at=row["ttl_expires_at"],
        lease_expires_at=row["lease_expires_at"],
        decided_at=row["decided_at"],
    )
