"""How verify reads the trail: seq-range pages, and tampering found at its row wherever it
falls against the page edges, on both backends.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest
from store_helpers import approved
from store_support import DB, pg_schema

from interlock.clock import FakeClock
from interlock.store import Store, VerifyReport
from interlock.store import audit as chain


def _history(store: Store, requests: int = 3) -> int:
    for _ in range(requests):
        r = approved(store)
        store.claim(r.id, agent="ops-agent", lease=60)
        store.outcome(r.id, agent="ops-agent", status="succeeded", summary="ok")
    return store.audit_head()[0]


class Counting:
    """A DB-API cursor that keeps the statements it runs."""

    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor
        self.sql: list[str] = []

    @property
    def statements(self) -> int:
        return len(self.sql)

    def execute(self, sql: str, /) -> object:
        self.sql.append(sql)
        return self.cursor.execute(sql)

    def fetchall(self) -> Sequence[Any]:
        return list(self.cursor.fetchall())


@contextmanager
def cursor(store: Store) -> Iterator[Counting]:
    with store.engine.connect() as conn:
        raw = conn.connection.cursor()
        try:
            yield Counting(raw)
        finally:
            raw.close()


def walk(store: Store, *, size: int) -> VerifyReport:
    """`chain.verify` over `chain.pages` of `size` entries."""

    def stored_prev(seq: int) -> str | None:
        with store.engine.connect() as conn:
            value = conn.exec_driver_sql(f"SELECT prev_hash FROM audit WHERE seq = {seq}").scalar()
            return None if value is None else str(value)

    head = store.audit_head()
    with cursor(store) as cur:
        rows = (row for page in chain.pages(cur, upto=head[0], size=size) for row in page)
        return chain.verify(rows, head=head, stored_prev=stored_prev)


@pytest.mark.parametrize("size", [1, 3, 4, 7, 5_000])
def test_pages_read_every_entry_once_in_order(store: Store, size: int) -> None:
    head = _history(store)
    with cursor(store) as cur:
        seqs = [row[0] for page in chain.pages(cur, upto=head, size=size) for row in page]
        assert seqs == list(range(1, head + 1))
        later = [row[0] for page in chain.pages(cur, after=2, upto=head - 3, size=size)
                 for row in page]
        assert later == list(range(3, head - 2))
        assert cur.statements == -(-head // size) + -(-(head - 5) // size)
    assert walk(store, size=size).ok


# Entry 4 is the first of a page of 3, the last of a page of 4, and mid-page for 5 and 7.
TAMPER = {
    "edit-entry": ["UPDATE audit SET entry = replace(entry, 'approve', 'deny') WHERE seq = 4"],
    "edit-column": ["UPDATE audit SET event = 'vote' WHERE seq = 4"],
    "delete": ["DELETE FROM audit WHERE seq = 4"],
    "delete-a-page": ["DELETE FROM audit WHERE seq BETWEEN 4 AND 9"],
    "swap": ["UPDATE audit SET seq = -1 WHERE seq = 4",
             "UPDATE audit SET seq = 4 WHERE seq = 5",
             "UPDATE audit SET seq = 5 WHERE seq = -1"],
    "renumber-past-the-head": ["UPDATE audit SET seq = 1000000 WHERE seq = 4"],
}


@pytest.mark.parametrize("size", [1, 3, 4, 5, 7])
@pytest.mark.parametrize("how", sorted(TAMPER))
def test_tampering_is_found_at_its_row_across_page_edges(
    db: DB, store: Store, how: str, size: int
) -> None:
    _history(store)
    db.owner_exec(*db.unguard, *TAMPER[how])
    report = walk(store, size=size)
    assert not report.ok
    assert report.bad_seq == 4, report
    assert report.checked == 3 and report.problem is not None
    expected = {"edit-entry": "was edited", "edit-column": "was edited", "delete": "is missing",
                "delete-a-page": "is missing", "swap": "does not follow",
                "renumber-past-the-head": "is missing"}[how]
    assert expected in report.problem
    assert store.verify().bad_seq == 4  # the store's own walk agrees


def test_removed_newest_entries_are_named_after_the_last_one_left(db: DB, store: Store) -> None:
    head = _history(store)
    db.owner_exec(*db.unguard, f"DELETE FROM audit WHERE seq > {head - 7}")
    report = walk(store, size=3)
    assert not report.ok and report.bad_seq == head - 6 and report.checked == head - 7
    assert "newest entries removed" in (report.problem or "")


def test_a_head_row_claiming_far_more_entries_ends_the_read_at_once(db: DB, store: Store) -> None:
    head = _history(store)
    db.owner_exec(f"UPDATE audit_head SET seq = {10**12}")
    with cursor(store) as cur:
        seqs = [row[0] for page in chain.pages(cur, upto=10**12, size=4) for row in page]
        assert seqs == list(range(1, head + 1))
        # the pages up to the last entry, then one empty page and one look for what follows
        assert cur.statements == -(-head // 4) + 2
    report = store.verify()
    assert not report.ok and report.bad_seq == head + 1


@pytest.fixture
def pg_store() -> Iterator[tuple[DB, Store]]:
    """A store on PostgreSQL only: what is tested is its planner."""
    for db in pg_schema():
        store = db.open(FakeClock())
        try:
            yield db, store
        finally:
            store.close()


@pytest.mark.postgres
def test_no_page_reads_more_than_its_entries_without_statistics(
    pg_store: tuple[DB, Store],
) -> None:
    """Why pages are seq ranges: on a table PostgreSQL has no statistics for (filled since
    the last ANALYZE, autovacuum not yet run), `seq > n ORDER BY seq LIMIT k` was planned as
    a sort of every entry after n, for every page. No step of a range page's plan handles
    more rows than the page holds."""
    db, store = pg_store
    head = _history(store)
    upto = head + 20_000
    # Filler the planner sees (only its size matters here; the chain is not walked).
    db.owner_exec(
        "INSERT INTO audit (seq, event, request_id, entry, prev_hash, hash) "
        f"SELECT s, 'vote', NULL, repeat('x', 300), repeat('0', 64), repeat('0', 64) "
        f"FROM generate_series({head + 1}, {upto}) AS s"
    )
    with cursor(store) as cur:
        assert sum(len(page) for page in chain.pages(cur, upto=upto, size=1_000)) == upto
    with store.engine.connect() as conn:
        def most_rows(sql: str) -> int:
            plan = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}").scalar_one()
            return _rows(plan[0]["Plan"])

        assert max(most_rows(sql) for sql in cur.sql) <= 1_000
        no_statistics = not conn.exec_driver_sql(
            "SELECT count(*) FROM pg_stats WHERE tablename = 'audit' "
            "AND schemaname = current_schema()"
        ).scalar_one()
        limit_page = most_rows(f"SELECT {chain.VERIFY_COLUMNS} FROM audit "
                               f"WHERE seq > 0 AND seq <= {upto} ORDER BY seq LIMIT 1000")
    if no_statistics:  # what a LIMIT page cost: every entry, sorted
        assert limit_page == upto


def _rows(node: dict[str, Any]) -> int:
    """The most rows any step of an EXPLAIN ANALYZE plan produced."""
    own = int(node.get("Actual Rows", 0)) * int(node.get("Actual Loops", 1))
    return max([own, *(_rows(child) for child in node.get("Plans", []))])
