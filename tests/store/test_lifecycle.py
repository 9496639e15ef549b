"""Every arrow of SPEC §4's chart, a sample of refused ones, claims, outcomes and idempotency.

Runs on both backends through the `store` fixture.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from store_helpers import LEAD, approved, result, submit

from interlock.clock import FakeClock
from interlock.errors import BadInput, Conflict, Gone, NotFound
from interlock.policy.records import Decision
from interlock.store import FINAL, TRANSITIONS, Request, State, Store, allowed

S = State
AGENT = "ops-agent"


def _to(store: Store, state: State) -> Request:
    """A request driven to `state` through the public API."""
    if state is S.SUBMITTED:
        raise AssertionError("submitted is never observable after submit returns")
    simple = {S.ALLOWED: Decision.ALLOW, S.NOTIFIED: Decision.NOTIFY,
              S.SUGGESTED: Decision.SUGGEST, S.DENIED: Decision.DENY}
    if state in simple:
        return submit(store, result(simple[state]))
    if state is S.PENDING:
        return submit(store)
    if state is S.APPROVED:
        return approved(store)
    if state is S.EXECUTING:
        r = approved(store)
        store.claim(r.id, agent=AGENT, lease=60)
        return store.get(r.id)
    if state is S.UNKNOWN:
        r = _to(store, S.EXECUTING)
        assert isinstance(store.clock, FakeClock)
        store.clock.advance(61)
        assert store.sweep().unknown == [r.id]
        return store.get(r.id)
    raise AssertionError(state)


def _move(store: Store, r: Request, to: State) -> Request:
    """Make the change that takes `r` to `to`."""
    rid = r.id
    if to is S.EXECUTING:
        store.claim(rid, agent=AGENT, lease=60)
        return store.get(rid)
    if to in (S.SUCCEEDED, S.FAILED):
        if r.state is S.UNKNOWN:
            return store.resolve(rid, reviewer=LEAD, status=to.value)  # type: ignore[arg-type]
        return store.outcome(rid, agent=AGENT, status=to.value)  # type: ignore[arg-type]
    if to is S.UNKNOWN:
        assert isinstance(store.clock, FakeClock)
        store.clock.advance(61)
        store.sweep()
        return store.get(rid)
    if to is S.CANCELLED:
        return store.cancel(rid, agent=AGENT, reason="not needed")
    if to in (S.DONE, S.DISMISSED):
        return store.resolve(rid, reviewer=LEAD, status=to.value)  # type: ignore[arg-type]
    if to is S.APPROVED:
        return store.vote(rid, reviewer=LEAD, verdict="approve")
    if to is S.DENIED:
        return store.vote(rid, reviewer=LEAD, verdict="deny", note="too risky")
    if to is S.CHANGES_REQUESTED:
        return store.vote(rid, reviewer=LEAD, verdict="request_changes", note="smaller")
    if to is S.EXPIRED:
        assert isinstance(store.clock, FakeClock)
        store.clock.advance(3601)
        store.sweep()
        return store.get(rid)
    if to is S.PENDING:  # approved -> pending: the TTL passed before the claim
        assert isinstance(store.clock, FakeClock)
        store.clock.advance(301)
        with pytest.raises(Conflict) as err:
            store.claim(rid, agent=AGENT, lease=60)
        assert err.value.code == "reconfirmation_required"
        return store.get(rid)
    raise AssertionError(to)


EDGES = [(a, b) for a, targets in TRANSITIONS.items() for b in sorted(targets)
         if a is not S.SUBMITTED]


@pytest.mark.parametrize(("start", "to"), EDGES, ids=[f"{a}->{b}" for a, b in EDGES])
def test_every_allowed_transition(store: Store, start: State, to: State) -> None:
    r = _to(store, start)
    assert r.state is start
    after = _move(store, r, to)
    assert after.state is to
    assert after.version > r.version
    events = [e.event for e in store.timeline(r.id)]
    assert events[-1] == f"state.{to.value}" or f"state.{to.value}" in events
    assert store.verify().ok


@pytest.mark.parametrize("decision", list(Decision))
def test_submission_goes_through_submitted(store: Store, decision: Decision) -> None:
    r = submit(store, result(decision))
    entries = store.timeline(r.id)
    assert [e.event for e in entries][:2] == ["submitted", f"state.{r.state.value}"]
    assert entries[1].data["from"] == "submitted"


def test_table_is_the_chart() -> None:
    assert allowed(S.PENDING, S.APPROVED)
    assert not allowed(S.PENDING, S.EXECUTING)
    assert not allowed(S.DENIED, S.APPROVED)
    assert {S.DENIED, S.DONE, S.DISMISSED, S.SUCCEEDED, S.FAILED,
                     S.CHANGES_REQUESTED, S.EXPIRED, S.CANCELLED} == FINAL


REFUSED: list[tuple[State, Callable[[Store, str], object]]] = [
    (S.PENDING, lambda s, i: s.outcome(i, agent=AGENT, status="succeeded")),
    (S.EXECUTING, lambda s, i: s.cancel(i, agent=AGENT)),
    (S.DENIED, lambda s, i: s.cancel(i, agent=AGENT)),
    (S.ALLOWED, lambda s, i: s.resolve(i, reviewer=LEAD, status="done")),
    (S.SUGGESTED, lambda s, i: s.resolve(i, reviewer=LEAD, status="succeeded")),
    (S.EXECUTING, lambda s, i: s.resolve(i, reviewer=LEAD, status="failed")),
]


@pytest.mark.parametrize(("start", "op"), REFUSED, ids=[str(s) for s, _ in REFUSED])
def test_forbidden_transition_names_id_and_state(
    store: Store, start: State, op: Callable[[Store, str], object]
) -> None:
    r = _to(store, start)
    with pytest.raises(Conflict) as err:
        op(store, r.id)
    assert r.id in err.value.message
    assert start.value in err.value.message
    assert store.get(r.id).state is start
    assert store.get(r.id).version == r.version


def test_claim_answers(store: Store) -> None:
    pending = submit(store)
    with pytest.raises(Conflict) as err:
        store.claim(pending.id, agent=AGENT, lease=60)
    assert err.value.code == "not_decided"
    with pytest.raises(NotFound):
        store.claim(pending.id, agent="someone-else", lease=60)

    r = approved(store)
    claim = store.claim(r.id, agent=AGENT, lease=60)
    assert claim.args == {"service": "api"}
    assert claim.digest == store.get(r.id).digest
    assert claim.lease_expires_at == store.clock.now() + 60
    with pytest.raises(Conflict) as err:
        store.claim(r.id, agent=AGENT, lease=60)
    assert err.value.code == "already_claimed"

    denied = submit(store, result(Decision.DENY))
    with pytest.raises(Gone) as gone:
        store.claim(denied.id, agent=AGENT, lease=60)
    assert gone.value.code == "denied"
    assert gone.value.message == "rule r"

    cancelled = submit(store)
    store.cancel(cancelled.id, agent=AGENT, reason="changed my mind")
    with pytest.raises(Gone) as gone:
        store.claim(cancelled.id, agent=AGENT, lease=60)
    assert (gone.value.code, gone.value.message) == ("cancelled", "changed my mind")


def test_checkpoint_and_redaction(store: Store) -> None:
    act = {"action": "deploy", "args": {"service": "api", "password": "hunter2",
                                        "db": {"token": "t0k"}},
           "checkpoint": {"step": 3}}
    r = store.submit(agent=AGENT, action=act, result=result(Decision.ALLOW),
                     redact_paths=["args.password", "args.*.token"])
    assert r.action["args"] == {"service": "api", "password": "[redacted]",
                                "db": {"token": "[redacted]"}}
    assert act["args"]["password"] == "hunter2"  # the caller's action is untouched
    claim = store.claim(r.id, agent=AGENT, lease=10)
    assert claim.checkpoint == {"step": 3}
    assert "hunter2" not in "".join(store.export_jsonl())


def test_ttl_moves_back_to_pending_and_needs_the_last_stage_again(
    store: Store, clock: FakeClock
) -> None:
    r = approved(store)
    assert r.ttl_expires_at == clock.now() + 300
    clock.advance(299)
    clock.advance(1)
    with pytest.raises(Conflict) as err:
        store.claim(r.id, agent=AGENT, lease=60)
    assert err.value.code == "reconfirmation_required"
    again = store.get(r.id)
    assert again.state is S.PENDING
    again = store.vote(r.id, reviewer=LEAD, verdict="approve")  # same reviewer, new round
    assert again.state is S.APPROVED
    assert store.claim(r.id, agent=AGENT, lease=60).args == {"service": "api"}


def test_idempotency_key_scoped_per_agent(store: Store) -> None:
    first = submit(store, idempotency_key="k1")
    assert submit(store, idempotency_key="k1").id == first.id
    with pytest.raises(Conflict) as err:
        store.submit(agent=AGENT, action={"action": "other", "idempotency_key": "k1"},
                     result=result())
    assert err.value.code == "idempotency_conflict"
    other = submit(store, agent="billing-bot", idempotency_key="k1")
    assert other.id != first.id


def test_revision_and_batch(store: Store) -> None:
    r = submit(store, batch_id="b1")
    store.vote(r.id, reviewer=LEAD, verdict="request_changes", note="smaller")
    rev = submit(store, revision_of=r.id, batch_id="b1")
    assert rev.revision_of == r.id
    assert {x.id for x in store.list_requests(agent=AGENT, batch_id="b1")} == {r.id, rev.id}
    with pytest.raises(NotFound):
        submit(store, agent="billing-bot", revision_of=r.id)


def test_require_approval_needs_requirements(store: Store) -> None:
    res = dataclasses.replace(result(Decision.ALLOW), decision=Decision.REQUIRE_APPROVAL)
    with pytest.raises(BadInput):
        store.submit(agent=AGENT, action={"action": "x"}, result=res)
