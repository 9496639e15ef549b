"""A server follows a policy change applied by another process (the CLI with --db, another
server), read from the shared audit trail; a hand edit or a file that does not load is not."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from apply_support import advice
from insights_history import POLICY, START, History, seed

from interlock.cli import serve
from interlock.clock import FakeClock
from interlock.gateway import Gateway
from interlock.insights.advice import text_hash
from interlock.insights.apply import apply_advice
from interlock.policy import Policy, load_policy
from interlock.server.app import create_app
from interlock.server.policy_follow import PolicyFollower
from interlock.server.settings import ServerSettings


def serving(local: History) -> Gateway:
    """The gateway a server built on the same store and file decides with."""
    gw: Gateway = create_app(Gateway(load_policy(local.gateway.policy.file), local.store),
                             ServerSettings(), background=False).state.gateway
    return gw


def test_a_change_applied_elsewhere_is_followed(local: History) -> None:
    path = Path(local.gateway.policy.file)
    gw = serving(local)
    seen: list[Policy] = []
    follower = PolicyFollower(gw, on_change=seen.append)
    assert follower.once() is None
    item = advice(local.store, path, "tighten_gate")
    done = apply_advice(local.store, policy_file=str(path), advice_id=item["id"], admin="ann")
    loaded = follower.once()
    assert loaded is not None and gw.policy is loaded
    assert loaded.hash == done.new_hash == text_hash(path.read_text())
    assert [p.hash for p in seen] == [done.new_hash]
    last = list(local.store.audit_entries())[-1]
    assert last.event == "policy.loaded" and last.data["hash"] == done.new_hash
    assert last.data["previous_hash"] == done.old_hash
    assert follower.once() is None and len(seen) == 1


def test_a_swap_in_this_process_is_reported_once(local: History) -> None:
    path = Path(local.gateway.policy.file)
    gw = serving(local)
    seen: list[str] = []
    follower = PolicyFollower(gw, on_change=lambda p: seen.append(p.hash))
    item = advice(local.store, path, "tighten_scope")
    done = apply_advice(local.store, policy_file=str(path), advice_id=item["id"], admin="ann",
                        swap=gw.swap_policy)
    assert follower.once() is None  # already serving it: nothing to load
    assert seen == [done.new_hash]
    assert not [e for e in local.store.audit_entries() if e.event == "policy.loaded"]


def test_hand_edits_and_broken_files_are_not_loaded(local: History) -> None:
    path = Path(local.gateway.policy.file)
    gw = serving(local)
    old = gw.policy.hash
    follower = PolicyFollower(gw)
    path.write_text(path.read_text() + "# a hand edit\n")
    assert follower.once() is None and gw.policy.hash == old  # no audited change: not looked at
    path.write_text(path.read_text().replace("# a hand edit\n", ""))
    item = advice(local.store, path, "tighten_gate")
    done = apply_advice(local.store, policy_file=str(path), advice_id=item["id"], admin="ann")
    applied = path.read_text()
    path.write_text(applied + "# then edited by hand\n")  # this host's copy is not the result
    assert follower.once() is None and gw.policy.hash == old
    path.write_text(applied)  # deployed at last: picked up at the next look
    assert follower.once() is not None and gw.policy.hash == done.new_hash


@pytest.mark.postgres
def test_servers_on_postgresql_move_to_the_new_policy_together(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two servers share a database and a policy file: one applies a change, the other
    follows, both record the new hash, and a third server started with the new file is
    accepted (no mismatch refusal)."""
    from tests.store.store_support import pg_schema

    monkeypatch.setattr(serve, "HEARTBEAT", 0.05)
    schemas = pg_schema()
    db = next(schemas)
    path = tmp_path / "interlock.yaml"
    shutil.copy(POLICY, path)
    clock = FakeClock(START)
    stores = [db.open(clock) for _ in range(3)]
    registrations: list[serve.Registration] = []
    try:
        seed(Gateway(load_policy(path), stores[0]), clock)
        gateways = [create_app(Gateway(load_policy(path), s), ServerSettings(),
                               background=False).state.gateway for s in stores[:2]]
        followers = []
        for s, gw in zip(stores, gateways, strict=False):
            r = serve.Registration(s, gw.policy.hash)
            r.claim()
            registrations.append(r)
            followers.append(PolicyFollower(gw, on_change=r.serving))
        item = advice(stores[0], path, "tighten_gate")
        done = apply_advice(stores[0], policy_file=str(path), advice_id=item["id"],
                            admin="ann", swap=gateways[0].swap_policy)
        assert done.new_hash is not None
        assert followers[0].once() is None and followers[1].once() is not None
        assert [gw.policy.hash for gw in gateways] == [done.new_hash] * 2
        assert [r.policy_hash for r in registrations] == [done.new_hash] * 2
        deadline = time.monotonic() + 10
        while True:  # the heartbeats write the new hash into the registry
            try:
                third = serve.Registration(stores[2], done.new_hash)
                third.claim()
                registrations.append(third)
                break
            except serve.PolicyMismatch:
                assert time.monotonic() < deadline, "the registry kept the old hash"
                time.sleep(0.05)
    finally:
        for r in registrations:
            r.release()
        for s in stores:
            s.close()
        next(schemas, None)


def test_a_change_made_on_top_of_a_hand_edit_is_not_followed(local: History) -> None:
    """The change's diff starts from a file this server never ran: loading the result would
    also load the hand edit, which nobody applied through interlock."""
    path = Path(local.gateway.policy.file)
    gw = serving(local)
    old = gw.policy.hash
    follower = PolicyFollower(gw)
    path.write_text(path.read_text().replace("timeout: 30m", "timeout: 45m"))
    item = advice(local.store, path, "tighten_gate")
    apply_advice(local.store, policy_file=str(path), advice_id=item["id"], admin="ann")
    assert follower.once() is None and gw.policy.hash == old
