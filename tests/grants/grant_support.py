"""Builders for the decision-memory tests: a gateway on a fresh SQLite store with a fake clock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from interlock.clock import FakeClock
from interlock.gateway import Gateway, Principal, Submitted
from interlock.policy import load_policy_text
from interlock.store import open_store

BOT = Principal(role="agent", name="bot")
LENA = Principal(role="reviewer", name="lena", groups=("tech-lead",))
LIAM = Principal(role="reviewer", name="liam", groups=("tech-lead",))
FIN = Principal(role="reviewer", name="fin", groups=("finance",))
SEC = Principal(role="reviewer", name="sec", groups=("security",))

POLICY = """\
version: 1
defaults: {decision: allow, approvers: [tech-lead]}
escalation: {novel_action: false, novel_recipient: false}
rules:
  - name: writes
    match: {action: write_file}
    decision: require_approval
    approvers: [tech-lead]
  - name: secret-writes
    match: {action: write_file, args.path: "/etc/*"}
    decision: deny
  - name: deploys
    match: {action: deploy}
    decision: require_approval
    approvers: [tech-lead]
    confirm: typed
  - name: two-person
    match: {action: delete_rows}
    decision: require_approval
    approvers: [tech-lead]
    quorum: 2
  - name: payments
    match: {action: pay}
    decision: require_approval
    stages:
      - {name: finance, approvers: [finance], quorum: 1}
      - {name: security, approvers: [security], quorum: 1}
  - name: iam
    match: {action: iam.grant}
    decision: suggest
  - name: iam-writes
    match: {action: write_file, args.path: "/iam/*"}
    decision: suggest
"""


def gateway(tmp: Path, clock: FakeClock | None = None) -> Gateway:
    store = open_store(f"sqlite:///{tmp / 'interlock.db'}", clock=clock or FakeClock())
    return Gateway(load_policy_text(POLICY), store)


def submit(gw: Gateway, action: str = "write_file", **fields: Any) -> Submitted:
    fields.setdefault("args", {"path": "/tmp/report.txt"})
    return gw.submit({"action": action, **fields}, BOT)


def events(gw: Gateway, name: str) -> list[dict[str, Any]]:
    return [e.data for e in gw.store.audit_entries() if e.event == name]
