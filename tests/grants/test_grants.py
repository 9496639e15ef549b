"""Decision memory: grant scope (agent+action, args pattern, run, until), expiry, revocation,
and the results a grant never touches (deny, suggest, typed confirmation, more than one
reviewer needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from grant_support import BOT, FIN, LENA, LIAM, events, gateway, submit

from interlock.clock import FakeClock
from interlock.errors import BadInput
from interlock.store import State


def remember(gw, rid: str, **spec: object) -> None:  # type: ignore[no-untyped-def]
    gw.decide(rid, LENA, "approve", remember=spec)


def test_agent_action_grant_lets_later_actions_through(tmp_path: Path) -> None:
    gw = gateway(tmp_path)
    first = submit(gw)
    assert first.request.state is State.PENDING
    remember(gw, first.request.id, scope="agent_action")
    [created] = events(gw, "grant.created")
    [grant] = gw.store.grants()
    assert created["grant"] == grant.id and grant.reviewer == "lena"
    later = submit(gw, args={"path": "/tmp/other.txt"})
    assert later.request.state is State.ALLOWED
    assert f"grant {grant.id} by lena" in later.result.reasons
    [used] = [e for e in gw.store.timeline(later.request.id) if e.event == "grant.used"]
    assert used.data["grant"] == grant.id and used.data["reviewer"] == "lena"
    # another action of the same agent, and the same action of another agent, still wait
    other = gw.submit({"action": "write_file", "agent": "bot2"},
                      BOT.__class__(role="agent", name="bot2"))
    assert other.request.state is State.PENDING
    assert submit(gw, "pay", amount=5).request.state is State.PENDING


def test_args_pattern_limits_a_grant(tmp_path: Path) -> None:
    gw = gateway(tmp_path)
    rid = submit(gw, args={"path": "/tmp/a.txt", "mode": 1}).request.id
    remember(gw, rid, scope="agent_action", args_pattern={"path": "/tmp/*", "mode": 1})
    assert submit(gw, args={"path": "/tmp/b.txt", "mode": 1}).request.state is State.ALLOWED
    assert submit(gw, args={"path": "/srv/b.txt", "mode": 1}).request.state is State.PENDING
    assert submit(gw, args={"path": "/tmp/b.txt", "mode": 2}).request.state is State.PENDING
    assert submit(gw, args={"path": "/tmp/b.txt"}).request.state is State.PENDING


def test_run_scope_is_limited_to_its_run(tmp_path: Path) -> None:
    gw = gateway(tmp_path)
    rid = submit(gw, context={"run_id": "r1"}).request.id
    remember(gw, rid, scope="run")
    assert submit(gw, context={"run_id": "r1"}).request.state is State.ALLOWED
    assert submit(gw, context={"run_id": "r2"}).request.state is State.PENDING
    assert submit(gw).request.state is State.PENDING
    no_run = submit(gw).request.id
    with pytest.raises(BadInput):
        remember(gw, no_run, scope="run")


def test_until_scope_expires_with_the_clock(tmp_path: Path) -> None:
    clock = FakeClock()
    gw = gateway(tmp_path, clock)
    rid = submit(gw).request.id
    remember(gw, rid, scope="until", until=clock.now() + 3600)
    assert submit(gw).request.state is State.ALLOWED
    clock.advance(3601)
    assert submit(gw).request.state is State.PENDING
    assert gw.store.grants(live=True) == [] and len(gw.store.grants()) == 1
    with pytest.raises(BadInput):  # until needs a time, in the future
        remember(gw, submit(gw).request.id, scope="until")
    with pytest.raises(BadInput):
        remember(gw, submit(gw).request.id, scope="until", until="2001-01-01T00:00:00Z")


def test_iso_until(tmp_path: Path) -> None:
    clock = FakeClock()  # 2023-11-14
    gw = gateway(tmp_path, clock)
    remember(gw, submit(gw).request.id, scope="until", until="2023-11-15T00:00:00Z")
    [grant] = gw.store.grants()
    assert grant.expires_at is not None and grant.expires_at > clock.now()


def test_revocation(tmp_path: Path) -> None:
    gw = gateway(tmp_path)
    remember(gw, submit(gw).request.id, scope="agent_action")
    [grant] = gw.store.grants()
    assert submit(gw).request.state is State.ALLOWED
    gw.store.revoke_grant(grant.id, actor="reviewer:liam")
    assert submit(gw).request.state is State.PENDING
    assert events(gw, "grant.revoked") == [{"grant": grant.id}]
    assert len(events(gw, "grant.used")) == 1


def test_never_overrides_deny_or_suggest(tmp_path: Path) -> None:
    gw = gateway(tmp_path)
    remember(gw, submit(gw).request.id, scope="agent_action")
    assert submit(gw, args={"path": "/etc/passwd"}).request.state is State.DENIED
    assert submit(gw, args={"path": "/iam/roles"}).request.state is State.SUGGESTED
    assert len(events(gw, "grant.used")) == 0


def test_never_for_typed_confirmation(tmp_path: Path) -> None:
    gw = gateway(tmp_path)
    rid = submit(gw, "deploy", environment="production").request.id
    with pytest.raises(BadInput):
        gw.decide(rid, LENA, "approve", confirmation="deploy production",
                  remember={"scope": "agent_action"})
    assert gw.store.get(rid).state is State.PENDING  # nothing approved
    assert gw.store.grants() == []


def test_not_where_one_reviewer_could_not_approve_alone(tmp_path: Path) -> None:
    gw = gateway(tmp_path)
    two = submit(gw, "delete_rows").request.id
    with pytest.raises(BadInput):
        gw.decide(two, LENA, "approve", remember={"scope": "agent_action"})
    staged = submit(gw, "pay").request.id
    with pytest.raises(BadInput):
        gw.decide(staged, FIN, "approve", remember={"scope": "agent_action"})
    assert gw.store.grants() == []


def test_a_grant_does_not_apply_where_the_rule_now_needs_more(tmp_path: Path) -> None:
    """A grant made on a one-reviewer request is not used for one needing two stages."""
    from interlock import grants as memory
    from interlock.policy.records import Decision

    gw = gateway(tmp_path)
    remember(gw, submit(gw).request.id, scope="agent_action")
    action = {"action": "write_file", "agent": "bot", "args": {"path": "/tmp/x"}}
    staged = gw.policy.evaluate({"action": "pay", "agent": "bot"})
    two = gw.policy.evaluate({"action": "delete_rows", "agent": "bot"})
    found = gw.store.grants(live=True)
    now = gw.store.clock.now()
    for result in (staged, two):
        assert memory.apply(result, action, found, now)[0].decision is Decision.REQUIRE_APPROVAL
    # a granter outside the stage's approvers is not enough either
    own = gw.policy.evaluate(action)
    assert memory.apply(own, action, found, now)[0].decision is Decision.ALLOW
    stranger = [g.__class__(**{**g.__dict__, "groups": ("marketing",)}) for g in found]
    assert memory.apply(own, action, stranger, now)[0].decision is (
        Decision.REQUIRE_APPROVAL)


def test_only_approvals_remember(tmp_path: Path) -> None:
    gw = gateway(tmp_path)
    rid = submit(gw).request.id
    with pytest.raises(BadInput):
        gw.decide(rid, LIAM, "deny", note="no", remember={"scope": "agent_action"})
    with pytest.raises(BadInput):
        gw.decide(rid, LIAM, "approve", remember={"scope": "forever"})
