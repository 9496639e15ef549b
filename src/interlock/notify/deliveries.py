"""Durable delivery records: one row per (event, target), and the audit position read up to.

The rows for an event and the new read position commit together, guarded by compare-and-set
on the position, so each event is queued once per target even with several servers running.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa

from interlock.store import Store

DeliveryStatus = Literal["queued", "sending", "delivered", "failed"]

metadata = sa.MetaData()

deliveries = sa.Table(
    "notify_deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event", sa.String(64), nullable=False),
    sa.Column("target", sa.String(200), nullable=False),
    sa.Column("notice", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_at", sa.Float, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("delivered_at", sa.Float, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.UniqueConstraint("event", "target", name="uq_notify_deliveries_event_target"),
    sa.Index("ix_notify_deliveries_due", "status", "next_at"),
)

cursor = sa.Table(
    "notify_cursor",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("seq", sa.Integer, nullable=False),
)


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
    """Reads and writes the delivery tables in the store's database."""

    def __init__(self, store: Store) -> None:
        self.store = store
        metadata.create_all(store.engine, checkfirst=True)

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        with self.store.backend.write_lock(), self.store.engine.begin() as conn:
            yield conn

    def position(self) -> int | None:
        """The audit sequence number read up to; None before the first read."""
        with self.store.engine.connect() as conn:
            row = conn.execute(sa.select(cursor.c.seq).where(cursor.c.id == 1)).first()
        return None if row is None else int(row.seq)

    def queue(self, old: int | None, new: int, rows: Sequence[tuple[str, str, dict[str, Any]]],
              now: float) -> None:
        """Queue `(event, target, notice)` rows and move the position from `old` to `new`,
        in one transaction; raises CursorMoved if another dispatcher moved it first."""
        try:
            with self._write() as conn:
                if old is None:
                    conn.execute(cursor.insert().values(id=1, seq=new))
                elif conn.execute(cursor.update().where(cursor.c.id == 1, cursor.c.seq == old)
                                  .values(seq=new)).rowcount != 1:
                    raise CursorMoved()
                if rows:
                    conn.execute(deliveries.insert(), [
                        {"event": event, "target": target, "notice": json.dumps(notice),
                         "status": "queued", "attempts": 0, "next_at": now, "created_at": now}
                        for event, target, notice in rows
                    ])
        except sa.exc.IntegrityError:
            # the position row or one of these deliveries exists: another dispatcher won
            raise CursorMoved() from None

    def due(self, now: float, *, limit: int = 50) -> list[Delivery]:
        """Queued deliveries whose next attempt is due, oldest first."""
        d = deliveries.c
        with self.store.engine.connect() as conn:
            rows = conn.execute(sa.select(deliveries).where(d.status == "queued",
                                                            d.next_at <= now)
                                .order_by(d.id).limit(limit)).mappings().all()
        return [_delivery(r) for r in rows]

    def next_due(self) -> float | None:
        """When the earliest queued delivery is due; None when nothing is queued."""
        d = deliveries.c
        with self.store.engine.connect() as conn:
            value = conn.execute(sa.select(sa.func.min(d.next_at))
                                 .where(d.status == "queued")).scalar()
        return None if value is None else float(value)

    def take(self, item: Delivery) -> bool:
        """Mark a delivery as being sent, if nobody took it since it was read (CAS)."""
        d = deliveries.c
        with self._write() as conn:
            return bool(conn.execute(
                deliveries.update().where(d.id == item.id, d.status == "queued",
                                          d.attempts == item.attempts)
                .values(status="sending", attempts=item.attempts + 1)).rowcount == 1)

    def delivered(self, item_id: int, now: float) -> None:
        with self._write() as conn:
            conn.execute(deliveries.update().where(deliveries.c.id == item_id)
                         .values(status="delivered", delivered_at=now, error=None))

    def failed(self, item_id: int, error: str, retry_at: float | None) -> None:
        """Record a failed attempt: queued again for `retry_at`, or given up when None."""
        values: dict[str, Any] = {"error": error[:1000]}
        if retry_at is None:
            values["status"] = "failed"
        else:
            values.update(status="queued", next_at=retry_at)
        with self._write() as conn:
            conn.execute(deliveries.update().where(deliveries.c.id == item_id).values(**values))

    def all(self) -> list[Delivery]:
        """Every delivery, oldest first (for tests and `interlock` diagnostics)."""
        with self.store.engine.connect() as conn:
            rows = conn.execute(sa.select(deliveries).order_by(deliveries.c.id)).mappings()
            return [_delivery(r) for r in rows]


def _delivery(r: Any) -> Delivery:
    return Delivery(id=r["id"], event=r["event"], target=r["target"],
                    notice=json.loads(r["notice"]), status=r["status"],
                    attempts=r["attempts"], next_at=r["next_at"],
                    delivered_at=r["delivered_at"], error=r["error"])
