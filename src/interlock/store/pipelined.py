"""PostgreSQL's write path: pipelined transactions on driver connections of the store's own.

A write sends its statements, its compare-and-sets and the audit append in one pipeline that
ends with one Sync. The connections are in autocommit mode at the driver and send no BEGIN or
COMMIT: in the extended query protocol, everything up to a Sync runs as one implicit
transaction, which the Sync commits, or rolls back if any statement failed (PostgreSQL's
protocol documentation, "Extended Query" and "Pipelining"). psycopg fetches a result inside
a pipeline with a flush request, not a Sync, so reads in the middle of a write stay inside it.
So a write that reads nothing is one round trip, two statements fewer than BEGIN ... COMMIT,
and the chain head, locked by the append, is released by the commit at that same Sync.

A compare-and-set that matches no row fails inside the database (`1 / count(*)`), which
rolls the whole write back at the Sync.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

from interlock.errors import Conflict, StoreUnavailable
from interlock.store import audit as chain
from interlock.store.tx import Tx

if TYPE_CHECKING:
    from interlock.store.core import StoreBase

#: Write connections a store has open at most, beside SQLAlchemy's pool (at most 30) for its
#: reads and other writes. The audit chain's head lets one write commit at a time anyway;
#: but a write waiting for the head waits asleep in the database, while one waiting for a
#: connection wakes Python threads: 8 writer threads ran 15-25% more request cycles with 8
#: connections than with 6. Many more would only crowd the database's connection limit when
#: several servers share it.
WRITERS = 8
#: Seconds a write waits for one of them before it fails.
WAIT = 30.0


class Pipelined:
    """A store's pipelined writes and the driver connections they run on."""

    def __init__(self, store: StoreBase) -> None:
        self.store = store
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        # One permit per connection a write may hold. Waiting for one is a C-level lock, not
        # a Python Condition (a BoundedSemaphore's): with many writer threads, those
        # wake-ups alone cost as much as the writes.
        self._permits: queue.SimpleQueue[None] = queue.SimpleQueue()
        for _ in range(WRITERS):
            self._permits.put(None)
        self._closed = False

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            with suppress(Exception):
                conn.close()

    # -- connections ------------------------------------------------------------------

    def take(self) -> Any:
        """An idle autocommit driver connection, the one used last, or opened if none is idle
        (at most `WRITERS` at once; a write waits for one). It comes from the engine (its
        URL, arguments and events), detached from SQLAlchemy's pool: a write takes no
        checkout, mode switch, reset and return. Every `take` is paired with a `give`."""
        try:
            self._permits.get(timeout=WAIT)
        except queue.Empty:
            raise StoreUnavailable(f"all {WRITERS} write connections to the database stayed "
                                   f"busy for {WAIT:g} s") from None
        try:
            with self._lock:
                if self._idle:
                    return self._idle.pop()
            pooled = self.store.engine.raw_connection()
            driver = pooled.driver_connection
            pooled.detach()
            assert driver is not None
            driver.autocommit = True
            return driver
        except BaseException:
            self._permits.put(None)
            raise

    def give(self, conn: Any, *, keep: bool = True) -> None:
        """Keep a connection for the next write, unless told not to (`keep`), it is broken,
        inside a transaction (a ROLLBACK that failed), or the store is closed."""
        from psycopg.pq import TransactionStatus

        try:
            with self._lock:
                if (keep and not self._closed and not conn.closed
                        and conn.info.transaction_status == TransactionStatus.IDLE):
                    self._idle.append(conn)
                    return
            with suppress(Exception):
                conn.close()
        finally:
            self._permits.put(None)

    # -- writes -----------------------------------------------------------------------

    @contextmanager
    def write(self) -> Iterator[Tx]:
        """One write: its statements, the compare-and-sets, the audit append, one Sync."""
        driver = self.take()
        failed = False
        try:
            tx = Tx(link=None, now=self.store.clock.now(), statements=self.store._statements,
                    pipeline=True)
            tx.cursor = driver.cursor()
            try:
                with _misses(tx), driver.pipeline() as pipe:  # its exit sends the one Sync
                    try:
                        yield tx
                        _send_writes(tx, self.store.backend.append)
                    except BaseException:
                        _abandon(tx, pipe)
                        raise
            except BaseException:
                failed = True
                _rollback(driver)
                raise
            finally:
                tx.cursor.close()
        finally:
            # After a failed pipeline the connection is closed, not kept: the server skips
            # every message after the error up to the Sync, the Parse of a statement psycopg
            # was preparing there too, while psycopg counts it as prepared; its next use
            # would fail with "prepared statement does not exist".
            self.give(driver, keep=not failed)


def _send_writes(tx: Tx, append: str) -> None:
    """The transaction's deferred inserts, then its compare-and-sets, each failing unless it
    changed exactly one row, and its audit append. The append travels in the last of these
    statements, and where there is at most one compare-and-set, the inserts before it do
    too: the common write (a request created, or changed with a vote and its counters) is
    one statement."""
    appended = {"packed": chain.packed(tx.entries)} if tx.entries else None
    writes: list[tuple[Any, dict[str, Any], bool]] = [
        *((stmt, params, False) for stmt, params in tx.inserts),
        *((stmt, params, True) for stmt, params, _miss in tx.deferred),
    ]
    then = append.removeprefix("SELECT ")
    if appended is not None and len(writes) > 1 and len(tx.deferred) <= 1:
        *firsts, (last, params, _checked) = writes
        found = tx.statements.combined(
            tuple((stmt, tuple(p)) for stmt, p, _c in firsts), last, tuple(params), then)
        if found is not None:
            sql, prefixes = found
            _sql, _order, base = tx.statements.checked_then(last, tuple(params), then)
            values = {**base, **params, **appended}
            for (prefix, first_base), (_stmt, first, _c) in zip(prefixes, firsts, strict=True):
                values.update((prefix + k, v) for k, v in {**first_base, **first}.items())
            tx.cursor.execute(sql, values)
            return
    last_i = len(writes) - 1
    for i, (stmt, params, checked) in enumerate(writes):
        if i == last_i and appended is not None:
            sql, _order, base = tx.statements.checked_then(stmt, tuple(params), then)
            tx.cursor.execute(sql, {**base, **params, **appended})
            return
        if checked:
            sql, _order, base = tx.statements.checked(stmt, tuple(params))
            tx.cursor.execute(sql, {**base, **params} if base else params)
        else:
            tx.run(stmt, params)
    if appended is not None:
        tx.cursor.execute(append, appended)


@contextmanager
def _misses(tx: Tx) -> Iterator[None]:
    """A compare-and-set that missed, as the error its write named for that case."""
    from psycopg import errors as psycopg_errors

    try:
        yield
    except psycopg_errors.DivisionByZero:
        misses = [miss for _s, _p, miss in tx.deferred if miss is not None]
        if len(misses) == 1:
            raise misses[0] from None
        raise Conflict("a request changed meanwhile; reload it and try again",
                       code="state_changed") from None


#: Queued when a write fails in Python: the Sync would otherwise commit what it sent so far.
_ABANDON = b"DO $$ BEGIN RAISE EXCEPTION 'interlock: write abandoned'; END $$"


def _abandon(tx: Tx, pipe: Any) -> None:
    """Make the implicit transaction fail, so its Sync rolls it back; sync here, so the error
    this causes is not reported again when the pipeline ends. If the write had already
    failed in the database, or the connection is gone, nothing commits anyway."""
    import psycopg

    with suppress(psycopg.Error):
        tx.cursor.execute(_ABANDON)
        pipe.sync()


def _rollback(driver: Any) -> None:
    from psycopg.pq import TransactionStatus

    if driver.info.transaction_status != TransactionStatus.IDLE:
        with suppress(Exception):
            driver.execute(b"ROLLBACK")
