"""The dispatcher's side of the store's outbox: one row per (event, target), and the position
in the audit trail read up to.

The rows for a batch of events and the new position commit together, guarded by
compare-and-set on the position, so each event is queued once per target even with several
servers running; a compare-and-set on each row lets exactly one server send it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa

from interlock.errors import StoreUnavailable
from interlock.notify.notice import Notice
from interlock.store import Store
from interlock.store import schema as t

DeliveryStatus = Literal["queued", "sending", "delivered", "failed"]

_o = t.outbox.c

#: The poll's two reads: both only search the index of queued rows, however many delivered
#: rows the outbox has kept.
DUE = (sa.select(t.outbox).where(t.OUTBOX_QUEUED, _o.next_at <= sa.bindparam("now", type_=sa.Float))
       .order_by(_o.next_at, _o.id).limit(sa.bindparam("limit", type_=sa.Integer)))
NEXT_DUE = sa.select(sa.func.min(_o.next_at)).where(t.OUTBOX_QUEUED)


class CursorMoved(Exception):
    """Another dispatcher queued the same events first; this transaction is rolled back."""


@dataclass(frozen=True, kw_only=True)
class Delivery:
    """One notice owed to one target."""

    id: int
    """Row id."""
    event: str
    """The notice's id (`audit:SEQ`)."""
    target: str
    """The target's name."""
    notice: dict[str, Any]
    """The notice as JSON."""
    status: DeliveryStatus
    """queued (waiting for its next attempt), sending, delivered, failed (given up)."""
    attempts: int
    """Attempts made."""
    next_at: float
    """When the next attempt is due."""
    delivered_at: float | None
    """When the target took it."""
    error: str | None
    """The last failure."""


class Ledger:
    """Reads and writes the dispatcher's rows of the outbox, in the store's database."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._insert = store.backend.insert_ignore(t.outbox)

    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        # marked as a read, so SQLite does not take the write lock for a poll
        with self.store.engine.connect().execution_options(interlock_read=True) as conn:
            yield conn

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        with self.store.backend.write_lock(), self.store.engine.begin() as conn:
            yield conn

    def position(self) -> int:
        """The audit sequence number read up to (0 before the first read)."""
        with self._read() as conn:
            seq = conn.execute(sa.select(t.outbox_cursor.c.seq)
                               .where(t.outbox_cursor.c.id == 1)).scalar()
        if seq is None:
            raise StoreUnavailable("the outbox has lost its read position (`outbox_cursor` "
                                   "row 1, written by `interlock db upgrade`)")
        return int(seq)

    def queue(self, old: int, new: int, rows: Sequence[tuple[Notice, str]], now: float) -> None:
        """Queue `(notice, target)` rows and move the position from `old` to `new`, in one
        transaction; raises CursorMoved if another dispatcher moved it first."""
        c = t.outbox_cursor.c
        with self._write() as conn:
            if conn.execute(t.outbox_cursor.update().where(c.id == 1, c.seq == old)
                            .values(seq=new)).rowcount != 1:
                raise CursorMoved()
            if rows:
                # a row that exists already stays as it is: a target hears of an event once,
                # even if the position was ever set back
                conn.execute(self._insert, [
                    {"event": notice.id, "target": target, "kind": notice.kind,
                     "payload": json.dumps(notice.to_json()), "status": "queued",
                     "attempts": 0, "next_at": now, "created_at": now}
                    for notice, target in rows
                ])

    def due(self, now: float, *, limit: int = 50) -> list[Delivery]:
        """Queued deliveries whose next attempt is due, the longest due first."""
        with self._read() as conn:
            rows = conn.execute(DUE, {"now": now, "limit": limit}).mappings().all()
        return [_delivery(r) for r in rows]

    def next_due(self) -> float | None:
        """When the earliest queued delivery is due; None when nothing is queued."""
        with self._read() as conn:
            value = conn.execute(NEXT_DUE).scalar()
        return None if value is None else float(value)

    def take(self, item: Delivery) -> bool:
        """Mark a delivery as being sent, if nobody took it since it was read (CAS)."""
        with self._write() as conn:
            return bool(conn.execute(
                t.outbox.update().where(_o.id == item.id, _o.status == "queued",
                                        _o.attempts == item.attempts)
                .values(status="sending", attempts=item.attempts + 1)).rowcount == 1)

    def delivered(self, item_id: int, now: float) -> None:
        with self._write() as conn:
            conn.execute(t.outbox.update().where(_o.id == item_id)
                         .values(status="delivered", delivered_at=now, error=None))

    def failed(self, item_id: int, error: str, retry_at: float | None) -> None:
        """Record a failed attempt: queued again for `retry_at`, or given up when None."""
        values: dict[str, Any] = {"error": error[:1000]}
        if retry_at is None:
            values["status"] = "failed"
        else:
            values.update(status="queued", next_at=retry_at)
        with self._write() as conn:
            conn.execute(t.outbox.update().where(_o.id == item_id).values(**values))

    def all(self) -> list[Delivery]:
        """Every delivery, oldest first (for tests and `interlock` diagnostics)."""
        with self._read() as conn:
            rows = conn.execute(sa.select(t.outbox).order_by(_o.id)).mappings()
            return [_delivery(r) for r in rows]


def _delivery(r: Any) -> Delivery:
    return Delivery(id=r["id"], event=r["event"], target=r["target"],
                    notice=json.loads(r["payload"]), status=r["status"],
                    attempts=r["attempts"], next_at=r["next_at"],
                    delivered_at=r["delivered_at"], error=r["error"])
