"""A decision history with known answers, built through the real Gateway and store on a
fake clock, so every rate and every time in the insights can be checked exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from interlock.clock import FakeClock
from interlock.gateway import Gateway, Principal
from interlock.store import Store

POLICY = Path(__file__).with_name("policy.yaml")
START = 1_700_000_000.0
ALICE = Principal(role="reviewer", name="alice", groups=("on-call",))
BOB = Principal(role="reviewer", name="bob", groups=("on-call",))


def agent(name: str) -> Principal:
    return Principal(role="agent", name=name)


@dataclass
class History:
    """The seeded store and what was done to it."""

    gateway: Gateway
    store: Store
    clock: FakeClock
    ids: dict[str, list[str]]

    def submit(self, who: str, **action: Any) -> str:
        return self.gateway.submit(action, agent(who)).request.id

    def run(self, rid: str, who: str) -> None:
        self.gateway.claim(rid, agent(who))
        self.gateway.outcome(rid, agent(who), "succeeded")


def seed(gateway: Gateway, clock: FakeClock) -> History:
    """60 label changes stamped in 1-2 s; 10 refunds (4 denied, 5 approved, 1 timed out);
    5 emails sent unattended (1 flagged afterwards); 2 invoice reads."""
    h = History(gateway=gateway, store=gateway.store, clock=clock, ids={})
    labels = h.ids["labels"] = []
    for i in range(60):
        rid = h.submit("triage", action="ticket.label", args={"ticket": i, "label": "bug"})
        clock.advance(1.0 if i % 2 else 2.0)
        gateway.decide(rid, ALICE, "approve")
        labels.append(rid)
        clock.advance(10)
    refunds = h.ids["refunds"] = [
        h.submit("billing", action="refund", args={"order": f"o{i}", "amount": 10 * (i + 1)})
        for i in range(10)
    ]
    t0 = clock.now()
    clock.set(t0 + 60)
    for rid in refunds[:4]:
        gateway.decide(rid, BOB, "deny", note="not eligible")
    for i, rid in enumerate(refunds[4:9]):
        clock.set(t0 + 100 + 10 * i)
        if i == 0:
            gateway.decide(rid, BOB, "approve", args={"order": "o4", "amount": 25})
        elif i == 1:
            gateway.decide(rid, BOB, "approve", note="checked the order history")
        else:
            gateway.decide(rid, BOB, "approve")
        h.run(rid, "billing")
    clock.set(t0 + 31 * 60)
    h.store.sweep()
    gateway.rate(refunds[8], BOB, "incorrect", correction={"amount": 0})
    emails = h.ids["emails"] = []
    for i in range(5):
        rid = h.submit("mailer", action="send_email", args={"to": f"c{i}@example.com"})
        h.run(rid, "mailer")
        gateway.review(rid, BOB, "flagged" if i == 0 else "ok",
                       note="wrong customer" if i == 0 else None)
        emails.append(rid)
    h.ids["reads"] = [h.submit("billing", action="read_invoice", args={"id": i})
                      for i in range(2)]
    clock.advance(60)
    return h
