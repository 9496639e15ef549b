"""The audit head as a store remembers it: two stores writing one database in turn keep one
linear chain, and a request submitted and claimed at once is stored as its final row."""

from __future__ import annotations

from store_helpers import action, result
from store_support import DB

from interlock.clock import FakeClock
from interlock.policy.records import Decision
from interlock.store import State, Store


def test_two_stores_writing_in_turn_keep_one_chain(db: DB, store: Store, clock: FakeClock) -> None:
    other = db.open(clock)
    try:
        for i in range(6):
            writer = store if i % 2 else other
            writer.record("system", "turn", {"i": i})
            writer.record("system", "again", {"i": i})
        assert store.audit_head() == other.audit_head()
        seqs = [e.seq for e in store.audit_entries()]
        assert seqs == list(range(1, len(seqs) + 1))
        report = store.verify()
        assert report.ok, report.problem
    finally:
        other.close()


def test_submitted_and_claimed_is_one_row_at_its_final_version(store: Store) -> None:
    r, claim = store.submit_claimed(agent="bot", action=action(), result=result(Decision.ALLOW),
                                     lease=30.0)
    assert claim is not None and claim.request_id == r.id
    stored = store.get(r.id)
    assert stored.state is State.EXECUTING and stored.version == 2
    assert stored == r
    events = [e.event for e in store.timeline(r.id)]
    assert events == ["submitted", "state.allowed", "state.executing"]
    assert store.verify().ok
