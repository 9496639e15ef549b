"""Schema revisions: a fresh database gets every one and matches `schema`; a database at an
older revision upgrades in place and keeps what it held (here: 0001 to 0002, the outbox).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from store_helpers import result
from store_support import DB

from interlock.cli import main
from interlock.policy.records import Decision
from interlock.store import SchemaOutdated, Store
from interlock.store import schema as t
from interlock.store.backends import backend_for_url
from interlock.store.migrate import head, upgrade

#: The tables an interlock at revision 0001 created for its notification dispatcher on first
#: start, beside the migrated ones; revision 0002 moves their rows into the outbox.
OLD = sa.MetaData()
OLD_DELIVERIES = sa.Table(
    "notify_deliveries",
    OLD,
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
OLD_CURSOR = sa.Table(
    "notify_cursor",
    OLD,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("seq", sa.Integer, nullable=False),
)


@pytest.fixture
def engine(db: DB) -> Iterator[sa.Engine]:
    e = backend_for_url(db.url).create_engine(db.url, db.connect_args)
    try:
        yield e
    finally:
        e.dispose()


def at_0001(engine: sa.Engine, db: DB) -> None:
    assert upgrade(engine, backend_for_url(db.url), to="0001") == (None, "0001")


def notice(seq: int, kind: str = "approval_needed") -> str:
    return json.dumps({"id": f"audit:{seq}", "kind": kind, "request_id": "R1"})


def delivery(seq: int, kind: str, status: str, attempts: int, next_at: float, *,
             delivered_at: float | None = None, error: str | None = None) -> dict[str, Any]:
    return {"event": f"audit:{seq}", "target": "hook", "notice": notice(seq, kind),
            "status": status, "attempts": attempts, "next_at": next_at, "created_at": seq,
            "delivered_at": delivered_at, "error": error}


def test_a_fresh_database_matches_the_schema(store: Store) -> None:
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == head()
        diff = compare_metadata(MigrationContext.configure(conn), t.metadata)
        names = set(sa.inspect(conn).get_table_names())
        indexes = {i["name"] for i in sa.inspect(conn).get_indexes("outbox")}
    assert diff == []
    assert {"outbox", "outbox_cursor"} <= names
    assert not names & {"notify_deliveries", "notify_cursor"}
    assert "ix_outbox_queued" in indexes


def test_a_database_at_0001_keeps_its_deliveries_and_read_position(
    db: DB, engine: sa.Engine
) -> None:
    at_0001(engine, db)
    with engine.begin() as conn:
        OLD.create_all(conn)
        conn.execute(OLD_CURSOR.insert().values(id=1, seq=42))
        conn.execute(OLD_DELIVERIES.insert(), [
            delivery(40, "approval_needed", "delivered", 1, 10.0, delivered_at=11.0),
            delivery(41, "expired", "sending", 1, 12.0),
            delivery(42, "approval_needed", "queued", 2, 20.0, error="HTTP 500"),
        ])
        # what every state change wrote at 0001, and nothing ever read
        conn.execute(sa.text("INSERT INTO outbox (kind, payload, created_at, attempts) "
                             "VALUES ('request.state', '{}', 1.0, 0)"))
    with pytest.raises(SchemaOutdated):
        db.open()
    assert main(["db", "upgrade", "--db", db.cli_url]) == 0

    with engine.connect() as conn:
        names = set(sa.inspect(conn).get_table_names())
        rows = conn.execute(sa.select(t.outbox).order_by(t.outbox.c.id)).mappings().all()
        seq = conn.execute(sa.select(t.outbox_cursor.c.seq)).scalar_one()
    assert not names & {"notify_deliveries", "notify_cursor"}
    assert seq == 42
    assert [(r["event"], r["target"], r["kind"], r["status"], r["attempts"], r["error"])
            for r in rows] == [
        ("audit:40", "hook", "approval_needed", "delivered", 1, None),
        ("audit:41", "hook", "expired", "sending", 1, None),
        ("audit:42", "hook", "approval_needed", "queued", 2, "HTTP 500"),
    ]
    assert json.loads(rows[2]["payload"]) == json.loads(notice(42))
    assert (rows[0]["delivered_at"], rows[2]["next_at"]) == (11.0, 20.0)

    store = db.open()
    try:
        from interlock.notify.deliveries import Ledger

        ledger = Ledger(store)
        assert ledger.position() == 42
        assert [d.event for d in ledger.due(100.0)] == ["audit:42"]
        with store.engine.begin() as conn:  # the outbox's own ids carry on after the copies
            conn.execute(t.outbox.insert().values(event="audit:43", target="hook", kind="x",
                                                  payload="{}", status="queued", next_at=0.0,
                                                  created_at=0.0))
        assert [d.event for d in ledger.all()][-1] == "audit:43"
    finally:
        store.close()


def test_a_database_at_0001_that_never_notified_reads_from_the_start(
    db: DB, engine: sa.Engine
) -> None:
    at_0001(engine, db)
    assert upgrade(engine, backend_for_url(db.url)) == ("0001", head())
    with engine.connect() as conn:
        assert conn.execute(sa.select(t.outbox_cursor)).all() == [(1, 0)]
        assert conn.execute(sa.select(sa.func.count()).select_from(t.outbox)).scalar() == 0
    # 0003 gave PostgreSQL the append a store now writes its audit entries with
    store = db.open()
    try:
        r = store.submit(agent="bot", action={"action": "read_x", "args": {}},
                         result=result(Decision.ALLOW))
        assert [e.event for e in store.timeline(r.id)] == ["submitted", "state.allowed"]
        assert store.verify().ok
    finally:
        store.close()


@pytest.mark.postgres
def test_an_interlock_not_yet_upgraded_still_appends_to_the_chain() -> None:
    """Until 0003 the append took three arrays; a process of that age, still running while
    the database is upgraded, goes on calling it, and its entries chain like any other."""
    from store_support import pg_schema

    from interlock.store import audit

    for db in pg_schema():
        store = db.open()
        try:
            r = store.submit(agent="bot", action={"action": "read_x", "args": {}},
                             result=result(Decision.ALLOW))
            pending = [
                audit.Pending(at=2.0, actor="admin:root", event="policy.loaded",
                              request_id=None, digest=None, data={"hash": "p" * 64}),
                audit.Pending(at=2.0, actor="agent:bot", event="cancelled", request_id=r.id,
                              digest=r.digest, data={"why": "an older process"}),
            ]
            with store.engine.begin() as conn:
                conn.exec_driver_sql(
                    "SELECT interlock_append(%(events)s, %(ids)s, %(bodies)s)",
                    {"events": [p.event for p in pending], "ids": [None, r.id],
                     "bodies": audit.bodies(pending)})
            entries = list(store.audit_entries())[-2:]
            assert [(e.event, e.request_id) for e in entries] == [
                ("policy.loaded", None), ("cancelled", r.id)]
            assert store.verify().ok
        finally:
            store.close()
