"""Builders for the autonomy tests: a gateway on a fresh SQLite store with a fake clock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from interlock.clock import FakeClock
from interlock.gateway import Gateway, Principal
from interlock.policy import load_policy_text
from interlock.store import Store, open_store

BOT = Principal(role="agent", name="bot")
LEAD = Principal(role="reviewer", name="lena", groups=("tech-lead",))
ADA = Principal(role="admin", name="ada")
BEN = Principal(role="admin", name="ben")

POLICY = """\
version: 1
defaults: {approvers: [tech-lead]}
risk:
  high: ["deploy"]
  medium: ["write_*"]
  low: ["read_*"]
escalation: {novel_action: false, novel_recipient: false}
autonomy:
  default: supervised
  max_level: @max_level@
  promote_after: @promote_after@
  demote_on: @demote_on@
"""


def gateway(tmp: Path, *, max_level: str = "autonomous", promote_after: int = 3,
            demote_on: str = "[denied, reversed, failed_after_approval]",
            clock: FakeClock | None = None) -> Gateway:
    text = (POLICY.replace("@max_level@", max_level)
            .replace("@promote_after@", str(promote_after)).replace("@demote_on@", demote_on))
    store: Store = open_store(f"sqlite:///{tmp / 'interlock.db'}", clock=clock or FakeClock())
    return Gateway(load_policy_text(text), store)


def approved(gw: Gateway, action: str = "write_file", **extra: Any) -> str:
    """Submit an action that waits, and approve it; returns its id."""
    sub = gw.submit({"action": action, "args": {"path": "/tmp/x"}, **extra}, BOT)
    assert sub.request.state.value == "pending", sub.result.reasons
    gw.decide(sub.request.id, LEAD, "approve")
    return sub.request.id


def level(gw: Gateway, agent: str = "bot") -> str | None:
    return gw.policy.level_of(agent, gw.facts_for({"action": "read_x", "agent": agent})).value \
        if gw.policy.autonomy else None


def events(gw: Gateway, name: str) -> list[dict[str, Any]]:
    return [e.data for e in gw.store.audit_entries() if e.event == name]
