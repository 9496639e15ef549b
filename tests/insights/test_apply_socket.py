"""Applying advice against a real `interlock serve`: a change applied from a terminal with
--db is followed by the server; a loosening asked for with --server is applied when a second
admin approves it with `interlock approve`, and the server decides with it at once."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx
from apply_support import advice
from insights_history import POLICY, START, seed
from tests.server.servers import cli, serving

from interlock.clock import FakeClock
from interlock.gateway import Gateway
from interlock.insights.advice import text_hash
from interlock.policy import load_policy
from interlock.store import open_store

WIDE = "5000d"  # the server reads the wall clock; the seeded history lies in 2023


def hash_served(url: str, want: str, timeout: float = 15.0) -> str:
    """The policy hash the server reports, once it is `want` (or the last one seen)."""
    deadline = time.monotonic() + timeout
    while True:
        got = str(httpx.get(url + "/healthz", timeout=5).json()["policy_hash"])
        if got == want or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def test_apply_against_a_running_server(tmp_path: Path) -> None:
    policy = tmp_path / "interlock.yaml"
    shutil.copy(POLICY, policy)
    db = f"sqlite:///{tmp_path / 'interlock.db'}"
    clock = FakeClock(START)
    store = open_store(db, clock=clock)
    try:
        seed(Gateway(load_policy(policy), store), clock)
        tighten = advice(store, policy, "tighten_gate")
        _, admin = store.create_token(kind="admin", name="ann", actor="test")
        _, bob = store.create_token(kind="admin", name="bob", actor="test")
    finally:
        store.close()
    with serving(tmp_path, "--policy", str(policy), "--db", db) as server:
        done = cli("insights", "apply", tighten["id"], "--db", db, "--policy", str(policy),
                   "--window", WIDE, "--as", "ann", cwd=tmp_path)
        assert done.stdout == tighten["diff"]
        new = text_hash(policy.read_text())
        assert hash_served(server.url, new) == new
        loosen = httpx.get(server.url + "/v1/insights", params={"window": WIDE},
                           headers={"Authorization": f"Bearer {admin}"}).json()
        item = next(a for a in loosen["advice"] if a["kind"] == "allowlist")
        before = policy.read_text()
        asked = cli("insights", "apply", item["id"], "--server", server.url, "--token", admin,
                    "--window", WIDE, "--reason", "always approved", cwd=tmp_path)
        rid = asked.stdout.strip()
        assert "second admin" in asked.stderr and policy.read_text() == before
        own = cli("approve", rid, "--server", server.url, "--token", admin, cwd=tmp_path,
                  check=False)
        assert own.returncode == 1 and "self_approval" in own.stderr
        approved = cli("approve", rid, "--server", server.url, "--token", bob, cwd=tmp_path)
        assert "succeeded" in approved.stdout + approved.stderr
        assert "  - name: labels\n    match: {action: ticket.label}\n    decision: allow\n" in (
            policy.read_text())
        final = text_hash(policy.read_text())
        assert httpx.get(server.url + "/healthz").json()["policy_hash"] == final
        verify = cli("audit", "verify", "--db", db, cwd=tmp_path)
        assert verify.stdout.startswith("ok")
