"""Revision 0002: notification deliveries live in the store's outbox.

An outbox row becomes one notice owed to one target, with its delivery state, and the
dispatcher's read position gets a table; what a dispatcher kept in its own tables moves over.
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels = None
depends_on = None

_Time = sa.Float(precision=53)
_Seq = sa.BigInteger().with_variant(sa.Integer, "sqlite")

#: The tables the dispatcher used to create for itself on first start, outside migrations.
_OLD_DELIVERIES = sa.table(
    "notify_deliveries",
    *(sa.column(name) for name in ("id", "event", "target", "notice", "status", "attempts",
                                    "next_at", "created_at", "delivered_at", "error")),
)
_OLD_CURSOR = sa.table("notify_cursor", sa.column("id"), sa.column("seq"))

_PAGE = 1000


def upgrade() -> None:
    # The rows so far were written by every state change and never read: the outbox starts
    # afresh in its new shape rather than carrying them along.
    op.drop_table("outbox")
    outbox = op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("target", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_at", _Time, nullable=False),
        sa.Column("created_at", _Time, nullable=False),
        sa.Column("delivered_at", _Time, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.UniqueConstraint("event", "target", name="uq_outbox_event_target"),
    )
    op.create_index("ix_outbox_queued", "outbox", ["next_at"],
                    sqlite_where=sa.text("status = 'queued'"),
                    postgresql_where=sa.text("status = 'queued'"))
    cursor = op.create_table(
        "outbox_cursor",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", _Seq, nullable=False),
    )

    bind = op.get_bind()
    existing = set(sa.inspect(bind).get_table_names())
    seq = 0
    if "notify_cursor" in existing:
        seq = bind.execute(sa.select(_OLD_CURSOR.c.seq).where(_OLD_CURSOR.c.id == 1)
                           ).scalar() or 0
        op.drop_table("notify_cursor")
    # Seeded once here, so every dispatcher only ever moves it by compare-and-set.
    op.bulk_insert(cursor, [{"id": 1, "seq": seq}])
    if "notify_deliveries" in existing:
        _move_deliveries(bind, outbox)
        op.drop_table("notify_deliveries")


def _move_deliveries(bind: sa.Connection, outbox: sa.Table) -> None:
    """Copy every delivery in its order, page by page; ids are new, so the outbox's own
    sequence stays ahead of them."""
    old = _OLD_DELIVERIES.c
    after = -1
    while True:
        page = bind.execute(sa.select(_OLD_DELIVERIES).where(old.id > after)
                            .order_by(old.id).limit(_PAGE)).mappings().all()
        if not page:
            return
        bind.execute(outbox.insert(), [
            {"event": r["event"], "target": r["target"], "kind": json.loads(r["notice"])["kind"],
             "payload": r["notice"], "status": r["status"], "attempts": r["attempts"],
             "next_at": r["next_at"], "created_at": r["created_at"],
             "delivered_at": r["delivered_at"], "error": r["error"]}
            for r in page
        ])
        after = page[-1]["id"]


def downgrade() -> None:
    raise NotImplementedError("interlock migrates forward only")
