"""Claims and outcomes from the row a store last committed (PostgreSQL): no load, one round
trip fewer. Another process may have moved the request on meanwhile; the write's
compare-and-set then fails, is rolled back whole, and the answer comes from the database's
row, exactly as if nothing had been known. Two stores on one database stand for two
processes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from store_helpers import approved, result, submit
from store_support import pg_schema

from interlock.clock import FakeClock
from interlock.errors import Conflict, Gone
from interlock.policy.records import Decision
from interlock.store import State, Store

pytestmark = pytest.mark.postgres


@pytest.fixture
def two(clock: FakeClock) -> Iterator[tuple[Store, Store]]:
    for db in pg_schema():
        a, b = db.open(clock), db.open(clock)
        try:
            yield a, b
        finally:
            a.close()
            b.close()


def _loads(store: Store) -> list[str]:
    """The request ids `store` loads from the database from now on."""
    seen: list[str] = []
    load = store._load

    def counted(conn: Any, request_id: str, *, lock: bool) -> Any:
        seen.append(request_id)
        return load(conn, request_id, lock=lock)

    store._load = counted  # type: ignore[method-assign]
    return seen


def test_a_claim_and_its_outcome_load_nothing(two: tuple[Store, Store]) -> None:
    a, _ = two
    r = approved(a)
    loads = _loads(a)
    claim = a.claim(r.id, agent="ops-agent", lease=60)
    done = a.outcome(r.id, agent="ops-agent", status="succeeded", summary="ok")
    assert loads == []
    assert claim.digest == r.digest and done.state is State.SUCCEEDED
    assert [e.event for e in a.timeline(r.id)][-2:] == ["state.executing", "state.succeeded"]
    assert a.verify().ok


def test_a_request_cancelled_elsewhere_is_not_claimed(two: tuple[Store, Store]) -> None:
    a, b = two
    r = submit(a, result(Decision.ALLOW))  # `a` knows it allowed
    b.cancel(r.id, agent="ops-agent", reason="not now")
    loads = _loads(a)
    with pytest.raises(Gone) as gone:
        a.claim(r.id, agent="ops-agent", lease=60)
    assert gone.value.code == "cancelled" and loads == [r.id]
    assert a.get(r.id).state is State.CANCELLED
    assert a.verify().ok


def test_a_request_claimed_elsewhere_is_not_claimed_again(two: tuple[Store, Store]) -> None:
    a, b = two
    r = approved(a)
    b.claim(r.id, agent="ops-agent", lease=60)
    with pytest.raises(Conflict) as again:
        a.claim(r.id, agent="ops-agent", lease=60)
    assert again.value.code == "already_claimed"
    # the row `a` knew is forgotten: the next answer is loaded too, and the same
    with pytest.raises(Conflict) as third:
        a.claim(r.id, agent="ops-agent", lease=60)
    assert third.value.code == "already_claimed"
    executing = [e for e in a.timeline(r.id) if e.event == "state.executing"]
    assert len(executing) == 1 and a.verify().ok


def test_an_outcome_reported_elsewhere_is_not_reported_twice(
    two: tuple[Store, Store],
) -> None:
    a, b = two
    r = approved(a)
    a.claim(r.id, agent="ops-agent", lease=60)  # `a` knows it executing
    b.outcome(r.id, agent="ops-agent", status="failed", summary="timeout")
    with pytest.raises(Conflict) as late:
        a.outcome(r.id, agent="ops-agent", status="succeeded")
    assert late.value.code == "invalid_transition"
    assert a.get(r.id).state is State.FAILED
    assert a.verify().ok


def test_an_approval_past_its_ttl_reopens_from_the_known_row(
    two: tuple[Store, Store], clock: FakeClock,
) -> None:
    a, _ = two
    r = approved(a)  # the gate's approval ttl: 300 s
    clock.advance(301)
    loads = _loads(a)
    with pytest.raises(Conflict) as late:
        a.claim(r.id, agent="ops-agent", lease=60)
    assert late.value.code == "reconfirmation_required" and loads == []
    assert a.get(r.id).state is State.PENDING and a.verify().ok


def test_a_request_cycle_is_five_statements(
    two: tuple[Store, Store], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a cycle sends PostgreSQL: a submission is its INSERT with the audit append; an
    approval loads the request with the reviewer's earlier votes, then inserts its vote,
    counts it for the agent, sets the state and appends, all in one statement; a claim and
    an outcome are each one compare-and-set with its append."""
    import psycopg

    from interlock.store import Reviewer

    a, _ = two
    sent: list[str] = []
    execute = psycopg.Cursor.execute

    def counted(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(query if isinstance(query, str) else str(query))
        return execute(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", counted)
    per_step = []
    r = submit(a)
    per_step.append(len(sent))
    a.vote(r.id, reviewer=Reviewer(name="lena", groups=("tech-lead",)), verdict="approve")
    per_step.append(len(sent))
    a.claim(r.id, agent="ops-agent", lease=60)
    per_step.append(len(sent))
    a.outcome(r.id, agent="ops-agent", status="succeeded")
    per_step.append(len(sent))
    assert per_step == [1, 3, 4, 5], sent
    assert all("interlock_append_packed" in sent[i] for i in (0, 2, 3, 4))
    assert a.get(r.id).state is State.SUCCEEDED and a.verify().ok


def test_known_rows_stay_within_their_memory_bounds(
    two: tuple[Store, Store], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A request with a large action is loaded when claimed rather than kept; past the row
    and byte bounds the least recently kept rows go."""
    from interlock.store import known

    a, _ = two
    big = submit(a, result(Decision.ALLOW), preview={"diff": "x" * known.ROW_BYTES})
    loads = _loads(a)
    a.claim(big.id, agent="ops-agent", lease=60)
    assert loads == [big.id]

    rows = a._known_rows
    monkeypatch.setattr(known, "ROWS", 3)
    made = [submit(a, result(Decision.ALLOW), n=n) for n in range(5)]
    assert rows.ids() == [r.id for r in made[2:]]
    each = rows.bytes // 3
    monkeypatch.setattr(known, "BYTES", rows.bytes - 1)
    submit(a, result(Decision.ALLOW), n=5)
    assert len(rows) == 2 and rows.bytes == 2 * each
