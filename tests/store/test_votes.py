"""Quorum, stages, gates, edits and the sweeper's timeouts, evaluated in the vote transaction.

Time moves only through the FakeClock.
"""

from __future__ import annotations

import pytest
from store_helpers import LEAD, LEAD2, MGR, OUTSIDER, SEC, gate, result, submit

from interlock.clock import FakeClock
from interlock.errors import BadInput, Conflict, Forbidden
from interlock.policy.records import Decision, OnTimeout, Requirements, Risk
from interlock.store import Reviewer, State, Store

AGENT = "ops-agent"


def test_quorum_counts_distinct_allowed_reviewers(store: Store) -> None:
    r = submit(store, result(Decision.REQUIRE_APPROVAL,
                             gate(stages=(("approval", ("tech-lead",), 2),))))
    r1 = store.vote(r.id, reviewer=LEAD, verdict="approve")
    assert (r1.state, r1.version) == (State.PENDING, r.version + 1)
    # the same vote again is answered with the current state and not counted twice
    assert store.vote(r.id, reviewer=LEAD, verdict="approve").version == r1.version
    assert len(store.votes(r.id)) == 1
    with pytest.raises(Forbidden) as err:
        store.vote(r.id, reviewer=OUTSIDER, verdict="approve")
    assert err.value.code == "not_an_approver"
    with pytest.raises(Forbidden) as err:
        store.vote(r.id, reviewer=Reviewer(name=AGENT, groups=("tech-lead",)), verdict="approve")
    assert err.value.code == "self_approval"
    with pytest.raises(Conflict) as err:
        store.vote(r.id, reviewer=LEAD2, verdict="approve", version=r.version)
    assert err.value.code == "stale_version"
    done = store.vote(r.id, reviewer=LEAD2, verdict="approve", version=r1.version)
    assert done.state is State.APPROVED


def test_named_reviewer_and_one_deny_denies(store: Store) -> None:
    r = submit(store, result(Decision.REQUIRE_APPROVAL,
                             gate(stages=(("approval", ("user:olga", "tech-lead"), 2),))))
    store.vote(r.id, reviewer=OUTSIDER, verdict="approve")
    denied = store.vote(r.id, reviewer=LEAD, verdict="deny", note="no rollback plan")
    assert (denied.state, denied.reason) == (State.DENIED, "no rollback plan")
    with pytest.raises(Conflict) as err:
        store.vote(r.id, reviewer=LEAD2, verdict="approve")
    assert err.value.code == "not_pending"
    assert store.agent(AGENT) is not None
    assert store.agent(AGENT).denials == 1  # type: ignore[union-attr]


def test_stages_run_in_order(store: Store) -> None:
    g = gate("large-transactions", (("tech-review", ("tech-lead",), 1),
                                    ("security-review", ("security",), 1)))
    r = submit(store, result(Decision.REQUIRE_APPROVAL, g))
    with pytest.raises(Forbidden):
        store.vote(r.id, reviewer=SEC, verdict="approve")  # its stage is not open yet
    store.vote(r.id, reviewer=LEAD, verdict="approve")
    assert store.vote(r.id, reviewer=SEC, verdict="approve").state is State.APPROVED
    assert [v.counted for v in store.votes(r.id)] == [
        ("large-transactions/tech-review",), ("large-transactions/security-review",)]


def test_a_reviewer_counts_in_one_stage_per_gate(store: Store) -> None:
    both = Reviewer(name="bo", groups=("tech-lead", "security"))
    g = gate("g", (("one", ("tech-lead",), 1), ("two", ("security",), 1)))
    r = submit(store, result(Decision.REQUIRE_APPROVAL, g))
    store.vote(r.id, reviewer=both, verdict="approve")
    assert store.vote(r.id, reviewer=both, verdict="approve").state is State.PENDING
    assert store.vote(r.id, reviewer=SEC, verdict="approve").state is State.APPROVED


def test_parallel_stages_and_every_gate_separately(store: Store) -> None:
    g1 = gate("prod", (("a", ("tech-lead",), 1), ("b", ("security",), 1)), parallel=True)
    g2 = gate("bulk", (("approval", ("tech-lead",), 2),))
    r = submit(store, result(Decision.REQUIRE_APPROVAL, g1, g2))
    store.vote(r.id, reviewer=SEC, verdict="approve")  # parallel: stage b is open at once
    r2 = store.vote(r.id, reviewer=LEAD, verdict="approve")  # counts in prod/a and bulk
    assert r2.state is State.PENDING
    assert store.votes(r.id)[-1].counted == ("prod/a", "bulk/approval")
    assert store.vote(r.id, reviewer=LEAD2, verdict="approve").state is State.APPROVED


def test_edit_resets_the_stage_and_changes_digest(store: Store) -> None:
    r = submit(store, result(Decision.REQUIRE_APPROVAL,
                             gate(stages=(("approval", ("tech-lead",), 2),))))
    store.vote(r.id, reviewer=LEAD, verdict="approve")
    edited = store.vote(r.id, reviewer=LEAD2, verdict="approve", args={"service": "web"})
    assert edited.state is State.PENDING
    assert edited.final_args == {"service": "web"}
    assert edited.action["args"] == {"service": "api"}  # the proposal is kept
    assert edited.digest != r.digest
    # lena's earlier approval was reset by the edit: she must approve again
    done = store.vote(r.id, reviewer=LEAD, verdict="approve")
    assert done.state is State.APPROVED
    assert store.claim(r.id, agent=AGENT, lease=5).args == {"service": "web"}


def test_edit_with_stricter_requirements(store: Store) -> None:
    r = submit(store)
    stricter = Requirements(gates=(gate(stages=(("approval", ("tech-lead",), 1),
                                                ("security", ("security",), 1))),))
    after = store.vote(r.id, reviewer=LEAD, verdict="approve", args={"service": "db"},
                       new_requirements=stricter)
    assert after.state is State.PENDING
    assert after.requirements == stricter
    assert store.vote(r.id, reviewer=SEC, verdict="approve").state is State.APPROVED


def test_timeout_deny_expires(store: Store, clock: FakeClock) -> None:
    r = submit(store)
    clock.advance(3599)
    assert store.sweep().expired == []
    clock.advance(1)
    assert store.sweep().expired == [r.id]
    assert store.get(r.id).state is State.EXPIRED


def test_timeout_escalates_once_then_denies(store: Store, clock: FakeClock) -> None:
    g = gate(timeout=600, on_timeout=OnTimeout.ESCALATE, escalate_to=("manager",))
    r = submit(store, result(Decision.REQUIRE_APPROVAL, g))
    with pytest.raises(Forbidden):
        store.vote(r.id, reviewer=MGR, verdict="approve")
    clock.advance(600)
    assert store.sweep().escalated == [r.id]
    esc = store.get(r.id)
    assert (esc.state, esc.deadline) == (State.PENDING, clock.now() + 600)
    clock.advance(600)
    assert store.sweep().expired == [r.id]

    r = submit(store, result(Decision.REQUIRE_APPROVAL, g))
    clock.advance(600)
    store.sweep()
    assert store.vote(r.id, reviewer=MGR, verdict="approve").state is State.APPROVED


@pytest.mark.parametrize(("risk", "state"), [(Risk.LOW, State.APPROVED),
                                             (Risk.MEDIUM, State.EXPIRED)])
def test_timeout_approve_only_for_low_risk(
    store: Store, clock: FakeClock, risk: Risk, state: State
) -> None:
    g = gate(timeout=60, on_timeout=OnTimeout.APPROVE)
    r = submit(store, result(Decision.REQUIRE_APPROVAL, g, risk=risk))
    clock.advance(60)
    store.sweep()
    after = store.get(r.id)
    assert after.state is state
    if state is State.EXPIRED:
        assert after.reason is not None
        assert "low risk" in after.reason


def test_delegate_adds_approvers(store: Store) -> None:
    r = submit(store, result(Decision.REQUIRE_APPROVAL, gate(escalate_to=("manager",))))
    with pytest.raises(Forbidden):
        store.vote(r.id, reviewer=MGR, verdict="approve")
    store.delegate(r.id, reviewer=LEAD, to=["manager"])
    assert store.vote(r.id, reviewer=MGR, verdict="approve").state is State.APPROVED
    assert "delegated" in [e.event for e in store.timeline(r.id)]


def test_delegate_only_to_whom_the_rules_name(store: Store) -> None:
    r = submit(store, result(Decision.REQUIRE_APPROVAL, gate(escalate_to=("manager",))))
    with pytest.raises(BadInput, match=r"manager, tech-lead\), not `marketing`"):
        store.delegate(r.id, reviewer=LEAD, to=["manager", "marketing"])
    with pytest.raises(Forbidden):  # nothing was added
        store.vote(r.id, reviewer=MGR, verdict="approve")
    assert "delegated" not in [e.event for e in store.timeline(r.id)]


def test_lease_passes_to_unknown(store: Store, clock: FakeClock) -> None:
    r = submit(store, result(Decision.ALLOW))
    store.claim(r.id, agent=AGENT, lease=30)
    clock.advance(29)
    assert store.sweep().unknown == []
    clock.advance(1)
    assert store.sweep().unknown == [r.id]
    with pytest.raises(Conflict):
        store.outcome(r.id, agent=AGENT, status="succeeded")
    assert store.resolve(r.id, reviewer=LEAD, status="failed").state is State.FAILED


def test_batch_votes_in_one_transaction(store: Store) -> None:
    items = [submit(store, batch_id="b7").id for _ in range(3)]
    other = submit(store, agent="billing-bot", batch_id="b7").id  # same name, other agent
    store.vote(items[0], reviewer=LEAD, verdict="deny", note="no")
    done, skipped = store.vote_batch("b7", agent=AGENT, reviewer=LEAD2, verdicts="approve")
    assert sorted(r.id for r in done) == sorted(items[1:])
    assert all(r.state is State.APPROVED for r in done)
    assert skipped == []
    assert store.get(other).state is State.PENDING

    more = [submit(store, batch_id="b8").id for _ in range(2)]
    done, skipped = store.vote_batch(
        "b8", agent=AGENT, reviewer=OUTSIDER,
        verdicts={more[0]: "approve", items[1]: "deny"},
    )
    assert done == []
    assert [(rid, code) for rid, code, _ in skipped] == [
        (more[0], "not_an_approver"), (items[1], "not_pending")]
    done, _ = store.vote_batch("b8", agent=AGENT, reviewer=LEAD, verdicts={more[1]: "deny"})
    assert [r.state for r in done] == [State.DENIED]
