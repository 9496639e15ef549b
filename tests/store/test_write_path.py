"""The write transaction's own guarantees, on both backends: a compare-and-set that misses
rolls back everything the transaction queued, audit entries included, and the store writes on."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from store_helpers import action, approved, result, submit

from interlock.errors import Conflict, TooMany
from interlock.policy.records import Decision
from interlock.store import Admission, AgentPaused, State, Store
from interlock.store import schema as t
from interlock.store.core import _CAS

_PAUSE = t.pauses.insert()
_PAUSED = sa.select(t.pauses.c.reason).where(t.pauses.c.scope == sa.bindparam("scope"))


def test_missed_compare_and_set_commits_nothing(store: Store) -> None:
    r = submit(store)
    head = store.audit_head()
    with pytest.raises(Conflict, match="changed meanwhile"), store._write(pipelined=True) as tx:
        tx.audit("system", "probe", {"n": 1}, request_id=r.id, digest=r.digest)
        tx.later(_CAS, {"old_id": r.id, "old_state": r.state.value,
                        "old_version": r.version + 7, "reason": "stale"},
                 Conflict("request changed meanwhile", code="state_changed"))
    assert store.audit_head() == head
    assert store.get(r.id).version == r.version
    assert store.verify().ok
    # the connection is usable afterwards, and the next write commits
    assert approved(store).state is State.APPROVED
    assert store.verify().ok


def test_error_inside_a_write_rolls_it_back(store: Store) -> None:
    r = submit(store)
    head = store.audit_head()
    with pytest.raises(RuntimeError), store._write(pipelined=True) as tx:
        tx.audit("system", "probe", {"n": 2}, request_id=r.id, digest=r.digest)
        tx.later(_CAS, {"old_id": r.id, "old_state": r.state.value,
                        "old_version": r.version, "reason": "changed"}, None)
        raise RuntimeError("boom")
    assert store.audit_head() == head
    assert store.get(r.id).reason is None
    assert approved(store).state is State.APPROVED


def test_a_write_that_fails_after_its_statements_ran_commits_none_of_them(store: Store) -> None:
    """Statements already executed (a read after them made the database run them) are rolled
    back with the write when it fails in Python: nothing commits but a write that completes."""
    r = submit(store)
    head = store.audit_head()
    with pytest.raises(RuntimeError, match="after the insert"), \
            store._write(pipelined=True) as tx:
        tx.run(_PAUSE, {"scope": "bot", "reason": "half a write", "actor": "test",
                        "at": tx.now})
        tx.audit("system", "probe", {"n": 3}, request_id=r.id, digest=r.digest)
        assert tx.fetch_row(_PAUSED, {"scope": "bot"}) == {"reason": "half a write"}
        raise RuntimeError("fails after the insert")
    assert store.paused("bot") is None
    assert store.audit_head() == head
    # the next write on the same connections commits as usual
    store.pause(agent="bot", reason="a whole write", actor="test")
    assert store.paused("bot") == "a whole write"
    assert store.verify().ok


def test_admission_checks_run_in_the_submit(store: Store) -> None:
    gated = result(Decision.REQUIRE_APPROVAL)
    first = store.submit(agent="bot", action=action(idempotency_key="k1"), result=gated,
                         admit=Admission(pending_limit=1, unpaused=True))
    with pytest.raises(TooMany, match="1 requests waiting"):
        store.submit(agent="bot", action=action(), result=gated,
                     admit=Admission(pending_limit=1))
    # another agent has its own count; an idempotent replay is the first request, unchecked
    store.submit(agent="other", action=action(), result=gated, admit=Admission(pending_limit=1))
    again = store.submit(agent="bot", action=action(idempotency_key="k1"), result=gated,
                         admit=Admission(pending_limit=1, unpaused=True))
    assert again.id == first.id

    store.pause(agent=None, reason="incident 42", actor="admin:root")
    store.pause(agent="bot", reason="runaway loop", actor="admin:root")
    head = store.audit_head()
    with pytest.raises(AgentPaused, match="runaway loop"):
        store.submit(agent="bot", action=action(), result=gated, admit=Admission(unpaused=True))
    with pytest.raises(AgentPaused, match="incident 42"):
        store.submit_claimed(agent="third", action=action(), result=result(Decision.ALLOW),
                             lease=60, admit=Admission(unpaused=True))
    assert store.audit_head() == head
    assert store.verify().ok
