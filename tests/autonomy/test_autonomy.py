"""Graduated autonomy: promotion after clean approvals, demotion on the configured events,
the max_level cap, pinned agents, and the gated set/pin flow that needs a second admin.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from autonomy_support import ADA, BEN, BOT, LEAD, approved, events, gateway, level

from interlock.errors import Forbidden
from interlock.store import Reviewer, State


def test_promotes_after_promote_after_clean_approvals(tmp_path: Path) -> None:
    gw = gateway(tmp_path, promote_after=3)
    assert level(gw) == "supervised"
    approved(gw)
    approved(gw)
    assert level(gw) == "supervised" and not events(gw, "autonomy.promoted")
    rid = approved(gw)
    assert level(gw) == "guided"
    [promoted] = events(gw, "autonomy.promoted")
    assert promoted["from"] == "supervised" and promoted["to"] == "guided"
    assert promoted["clean_approvals"] == 3 and "3 clean approvals" in promoted["reason"]
    assert any(e.event == "autonomy.promoted" for e in gw.store.timeline(rid))
    # the policy uses the stored level at once: a low-risk read now runs without asking
    assert gw.submit({"action": "read_file"}, BOT).request.state is State.ALLOWED
    agent = gw.store.agent("bot")
    assert agent is not None and agent.clean_approvals == 0 and agent.level == "guided"


def test_edited_approvals_and_incorrect_ratings_do_not_count(tmp_path: Path) -> None:
    gw = gateway(tmp_path, promote_after=2)
    sub = gw.submit({"action": "write_file", "args": {"path": "/a"}}, BOT)
    gw.decide(sub.request.id, LEAD, "approve", args={"path": "/b"})
    rid = approved(gw)
    assert level(gw) == "supervised"
    gw.claim(rid, BOT)
    gw.outcome(rid, BOT, "succeeded")
    gw.rate(rid, LEAD, "incorrect")
    approved(gw)
    assert level(gw) == "supervised"  # the incorrect one was taken back
    approved(gw)
    assert level(gw) == "guided"


def test_demoted_on_deny(tmp_path: Path) -> None:
    gw = gateway(tmp_path, promote_after=1)
    approved(gw)
    assert level(gw) == "guided"
    sub = gw.submit({"action": "write_file"}, BOT)
    gw.decide(sub.request.id, LEAD, "deny", note="not now")
    assert level(gw) == "supervised"
    [demoted] = events(gw, "autonomy.demoted")
    assert demoted == {"agent": "bot", "from": "guided", "to": "supervised",
                       "reason": "denied", "clean_approvals": 0}


def test_never_below_supervised_and_deny_resets_the_count(tmp_path: Path) -> None:
    gw = gateway(tmp_path, promote_after=2)
    approved(gw)
    sub = gw.submit({"action": "write_file"}, BOT)
    gw.decide(sub.request.id, LEAD, "deny", note="no")
    assert level(gw) == "supervised" and not events(gw, "autonomy.demoted")
    approved(gw)
    assert level(gw) == "supervised"  # the run of clean approvals started over
    approved(gw)
    assert level(gw) == "guided"


def test_demoted_on_reversal(tmp_path: Path) -> None:
    gw = gateway(tmp_path, promote_after=1)
    approved(gw)
    approved(gw, "deploy")
    assert level(gw) == "autonomous"
    sub = gw.submit({"action": "write_file"}, BOT, claim=True)  # medium risk: allowed now
    assert sub.claim is not None
    gw.outcome(sub.request.id, BOT, "succeeded")
    gw.review(sub.request.id, LEAD, "reversed", note="rolled back")
    assert level(gw) == "guided"
    assert events(gw, "autonomy.demoted")[-1]["reason"] == "reversed"


def test_demoted_on_failure_after_approval(tmp_path: Path) -> None:
    gw = gateway(tmp_path, promote_after=1)
    rid = approved(gw)
    assert level(gw) == "guided"
    gw.claim(rid, BOT)
    gw.outcome(rid, BOT, "failed", summary="disk full")
    assert level(gw) == "supervised"
    assert events(gw, "autonomy.demoted")[-1]["reason"] == "failed_after_approval"


def test_demote_on_lists_the_events_that_count(tmp_path: Path) -> None:
    gw = gateway(tmp_path, promote_after=1, demote_on="[denied]")
    rid = approved(gw)
    gw.claim(rid, BOT)
    gw.outcome(rid, BOT, "failed")
    assert level(gw) == "guided" and not events(gw, "autonomy.demoted")


def test_max_level_caps_promotion(tmp_path: Path) -> None:
    gw = gateway(tmp_path, promote_after=1, max_level="guided")
    for _ in range(4):
        approved(gw, "deploy")
    assert level(gw) == "guided"
    assert len(events(gw, "autonomy.promoted")) == 1


def test_pinned_agents_never_move(tmp_path: Path) -> None:
    gw = gateway(tmp_path, promote_after=1)
    rid = gw.propose_autonomy(ADA, "bot", "guided", pinned=True, reason="trial").id
    gw.decide(rid, BEN, "approve")
    assert level(gw) == "guided"
    approved(gw, "deploy")
    approved(gw, "deploy")
    assert level(gw) == "guided"
    sub = gw.submit({"action": "deploy"}, BOT)
    gw.decide(sub.request.id, LEAD, "deny", note="no")
    assert level(gw) == "guided"
    assert not events(gw, "autonomy.promoted") and not events(gw, "autonomy.demoted")


def test_setting_a_level_needs_a_second_admin(tmp_path: Path) -> None:
    gw = gateway(tmp_path)
    with pytest.raises(Forbidden):
        gw.propose_autonomy(LEAD, "bot", "full_auto")
    r = gw.propose_autonomy(ADA, "bot", "autonomous", pinned=True, reason="proven")
    assert r.state is State.PENDING and r.agent == "interlock"
    assert level(gw) == "supervised"  # nothing applied yet
    with pytest.raises(Forbidden) as asked:
        gw.decide(r.id, ADA, "approve")
    assert asked.value.code == "self_approval"
    with pytest.raises(Forbidden):  # a reviewer outside `admin` cannot approve it either
        gw.decide(r.id, LEAD, "approve")
    done = gw.decide(r.id, BEN, "approve")
    assert done.state is State.SUCCEEDED  # applied once, by claiming it
    assert level(gw) == "autonomous"
    agent = gw.store.agent("bot")
    assert agent is not None and agent.pinned
    [entry] = events(gw, "autonomy.set")
    assert entry == {"agent": "bot", "level": "autonomous", "pinned": True, "why": "proven"}


def test_a_denied_level_change_is_not_applied(tmp_path: Path) -> None:
    gw = gateway(tmp_path)
    r = gw.propose_autonomy(ADA, "bot", "full_auto")
    gw.decide(r.id, BEN, "deny", note="not earned")
    assert level(gw) == "supervised" and not events(gw, "autonomy.set")


def test_the_store_counts_without_a_policy_section(tmp_path: Path) -> None:
    gw = gateway(tmp_path)
    gw.store.autonomy = None
    sub = gw.submit({"action": "write_file"}, BOT)
    gw.store.vote(sub.request.id, reviewer=Reviewer(name="lena", groups=("tech-lead",)),
                  verdict="deny", note="no")
    agent = gw.store.agent("bot")
    assert agent is not None and agent.denials == 1 and agent.level is None
