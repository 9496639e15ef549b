"""Applying advice to the policy file: comments kept, stale or invalid changes refused with the
file untouched, every change audited, and a loosening only through a second admin's approval."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from apply_support import admins, advice, changes
from insights_history import ALICE, START, History, agent

from interlock.clock import FakeClock
from interlock.errors import Forbidden, PolicyError
from interlock.gateway import Gateway, Principal
from interlock.insights import policy_edit as pe
from interlock.insights.advice import advise, text_hash
from interlock.insights.apply import (
    AdviceGone,
    NotApplicable,
    PolicyChanged,
    apply_advice,
    write_change,
)
from interlock.insights.figures import report
from interlock.policy import load_policy, load_policy_text
from interlock.policy.records import Decision
from interlock.store import State, Store

ANN = Principal(role="admin", name="ann")
BOB = Principal(role="admin", name="bob")


def policy_of(h: History) -> Path:
    return Path(h.gateway.policy.file)


def test_tightening_is_written_with_comments_kept_and_audited(local: History) -> None:
    path = policy_of(local)
    before = path.read_text()
    item = advice(local.store, path, "tighten_gate")
    assert not item["loosens"] and item["id"].endswith("@" + text_hash(before)[:12])
    done = apply_advice(local.store, policy_file=str(path), advice_id=item["id"], admin="ann",
                        reason="emails went to the wrong customer")
    after = path.read_text()
    assert done.status == "applied" and done.diff == item["diff"]
    # Only the new rule is added: every comment, quote and layout choice is where it was.
    assert after.startswith(before)
    assert after[len(before):] == ("  - name: review-send-email\n"
                                   "    match: {action: send_email}\n"
                                   "    decision: require_approval\n")
    assert "# Every label change waits for on-call." in after and "# money leaves" in after
    policy = load_policy(path)
    assert done.new_hash == policy.hash == text_hash(after) and done.old_hash == text_hash(before)
    assert policy.evaluate({"action": "send_email", "agent": "mailer"}).decision is (
        Decision.REQUIRE_APPROVAL)
    [entry] = changes(local.store)
    assert entry.actor == "admin:ann"
    assert entry.data["old_hash"] == done.old_hash and entry.data["new_hash"] == done.new_hash
    assert entry.data["advice_id"] == item["id"] and entry.data["kind"] == "tighten_gate"
    assert entry.data["diff"] == item["diff"] and entry.data["file"] == str(path)
    assert entry.data["reason"] == "emails went to the wrong customer"
    assert local.store.verify().ok
    assert not [f for f in os.listdir(path.parent) if f.endswith(".tmp")]


def test_the_file_keeps_its_mode(local: History) -> None:
    path = policy_of(local)
    path.chmod(0o640)
    item = advice(local.store, path, "tighten_scope")
    apply_advice(local.store, policy_file=str(path), advice_id=item["id"], admin="ann")
    assert (path.stat().st_mode & 0o777) == 0o640
    assert "billing: {actions: [read_invoice]}" in path.read_text()


def test_a_stale_suggestion_is_refused(local: History) -> None:
    path = policy_of(local)
    item = advice(local.store, path, "tighten_gate")
    edited = path.read_text() + "# edited by hand since\n"
    path.write_text(edited)
    with pytest.raises(PolicyChanged) as err:
        apply_advice(local.store, policy_file=str(path), advice_id=item["id"], admin="ann")
    assert err.value.code == "policy_changed" and err.value.status == 409
    assert "changed since" in err.value.message
    assert path.read_text() == edited and not changes(local.store)
    # The change itself checks the hash too, under the writer's lock.
    with pytest.raises(PolicyChanged):
        write_change(local.store, path=str(path), base_hash=item["policy_hash"],
                     changes=[pe.AddRule(name="x", match={"action": "x"}, decision="deny")],  # type: ignore[arg-type]
                     actor="admin:ann", data={})
    assert path.read_text() == edited


def test_a_result_that_does_not_load_is_refused_and_the_file_untouched(local: History) -> None:
    path = policy_of(local)
    before = path.read_bytes()
    bad = pe.AddRule(name="broken", match={"action": "refund[", "agent": "billing"},
                     decision="allow")
    with pytest.raises(PolicyError) as err:
        write_change(local.store, path=str(path), base_hash=text_hash(before.decode()),
                     changes=[bad], actor="admin:ann", data={})
    assert "(after the change)" in str(err.value.diagnostics[0])
    assert "unbalanced `[`" in err.value.message
    assert path.read_bytes() == before
    assert not changes(local.store)
    assert not [f for f in os.listdir(path.parent) if f.endswith(".tmp")]


def test_unknown_diffless_and_mistyped_ids(local: History) -> None:
    path = str(policy_of(local))
    rubber = advice(local.store, path, "rubber_stamping")
    with pytest.raises(NotApplicable, match="how people review"):
        apply_advice(local.store, policy_file=path, advice_id=rubber["id"], admin="ann")
    item = advice(local.store, path, "tighten_gate")
    gone = item["id"].replace("send_email", "send_fax")
    with pytest.raises(AdviceGone) as err:
        apply_advice(local.store, policy_file=path, advice_id=gone, admin="ann")
    assert err.value.status == 404 and err.value.code == "no_such_advice"
    with pytest.raises(AdviceGone, match="not an advice id"):
        apply_advice(local.store, policy_file=path, advice_id="tighten_gate", admin="ann")
    # Outside the window the figures do not cross the threshold.
    with pytest.raises(AdviceGone):
        apply_advice(local.store, policy_file=path, advice_id=item["id"], admin="ann",
                     window=30.0)
    with pytest.raises(NotApplicable, match="no readable policy file"):
        apply_advice(local.store, policy_file="<policy>", advice_id=item["id"], admin="ann")
    assert not changes(local.store)


def test_loosening_waits_for_a_second_admin(local: History) -> None:
    path = policy_of(local)
    before = path.read_text()
    gw = local.gateway
    item = advice(local.store, path, "allowlist")
    assert item["loosens"]
    with pytest.raises(Forbidden) as err:  # nobody else could approve it
        apply_advice(local.store, policy_file=str(path), advice_id=item["id"], admin="ann")
    assert err.value.code == "no_second_admin"
    admins(local.store, "ann", "bob")
    done = apply_advice(local.store, policy_file=str(path), advice_id=item["id"], admin="ann",
                        reason="labels are always approved", swap=gw.swap_policy)
    assert done.status == "pending" and done.new_hash is None and done.request_id
    assert path.read_text() == before and not changes(local.store)
    request = local.store.get(done.request_id)
    assert request.agent == "interlock" and request.action_name == "policy.change"
    assert request.state is State.PENDING
    assert request.action["preview"] == {"kind": "diff", "content": item["diff"]}
    assert request.action["args"]["requested_by"] == "ann"
    # The admin who asked cannot approve it; a reviewer outside `admin` cannot either.
    with pytest.raises(Forbidden) as err:
        gw.decide(request.id, ANN, "approve")
    assert err.value.code == "self_approval"
    with pytest.raises(Forbidden) as err:
        gw.decide(request.id, ALICE, "approve")
    assert err.value.code == "not_an_approver"
    assert path.read_text() == before
    done_request = gw.decide(request.id, BOB, "approve")
    assert done_request.state is State.SUCCEEDED, done_request.reason
    after = path.read_text()
    assert "  - name: labels\n    match: {action: ticket.label}\n    decision: allow\n" in after
    assert "# Every label change waits for on-call." in after
    assert gw.policy.hash == text_hash(after)
    decided = gw.submit({"action": "ticket.label", "args": {"ticket": 1}}, agent("triage"))
    assert decided.request.state is State.ALLOWED
    [entry] = changes(local.store)
    assert entry.request_id == request.id and entry.actor == "admin:ann"
    assert entry.data["approved_by"] == ["bob"] and entry.data["kind"] == "allowlist"
    assert entry.data["old_hash"] == text_hash(before)
    assert local.store.verify().ok


def test_an_approval_after_the_file_moved_fails_the_request(local: History) -> None:
    path = policy_of(local)
    admins(local.store, "ann", "bob")
    item = advice(local.store, path, "allowlist")
    done = apply_advice(local.store, policy_file=str(path), advice_id=item["id"], admin="ann")
    assert done.request_id is not None
    edited = path.read_text().replace("timeout: 30m", "timeout: 45m")
    path.write_text(edited)
    r = local.gateway.decide(done.request_id, BOB, "approve")
    assert r.state is State.FAILED and r.reason is not None
    assert r.reason.startswith("not applied:") and "changed since" in r.reason
    assert path.read_text() == edited and not changes(local.store)


def test_glob_characters_in_an_action_name_are_matched_exactly(tmp_path: Path) -> None:
    """An agent chooses its action names; `run*` approved 50 times must not allow `run_x`."""
    path = tmp_path / "interlock.yaml"
    path.write_text("version: 1\ndefaults:\n  decision: require_approval\n  approvers: [on-call]\n"
                    "limits: {pending_per_agent: 1000, actions_per_minute: 100000}\n")
    clock = FakeClock(START)
    from interlock.store import open_store

    store: Store = open_store(f"sqlite:///{tmp_path / 'db'}", clock=clock)
    try:
        gw = Gateway(load_policy(path), store)
        for i in range(50):
            rid = gw.submit({"action": "run*", "args": {"i": i}}, agent("ops")).request.id
            clock.advance(5)
            gw.decide(rid, ALICE, "approve")
        [item] = [a for a in advise(report(store, window=86400.0), path.read_text())
                  if a.kind == "allowlist"]
        assert item.diff is not None
        policy = load_policy_text(pe.edit(path.read_text(), pe.edits(item.changes)))
        assert policy.evaluate({"action": "run*", "agent": "ops"}).decision is Decision.ALLOW
        assert policy.evaluate({"action": "run_all", "agent": "ops"}).decision is (
            Decision.REQUIRE_APPROVAL)
    finally:
        store.close()


def test_change_data_round_trips(local: History) -> None:
    for kind in ("allowlist", "tighten_scope", "tighten_gate"):
        item = advice(local.store, policy_of(local), kind)
        again = [pe.change_from_json(c) for c in item["changes"]]
        text = policy_of(local).read_text()
        assert pe.unified_diff(text, pe.edit(text, pe.edits(again)), "interlock.yaml") == (
            item["diff"])
    with pytest.raises(Exception, match="not a policy change"):
        pe.change_from_json({"op": "drop_all_rules"})
