"""The sweeper: stage timeouts (deny, escalate once, approve low risk) and lapsed claim leases.

Safe in many processes at once: rows another sweeper holds are skipped (`SKIP LOCKED`).
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from interlock.policy.records import OnTimeout, Requirements, Risk
from interlock.store import quorum
from interlock.store import schema as t
from interlock.store.core import dumps, requirements_of
from interlock.store.lifecycle import LifecycleStore
from interlock.store.records import State, SweepReport
from interlock.store.tx import Row, Tx


class SweepingStore(LifecycleStore):
    """Adds `sweep`, which moves requests whose time has come."""

    def sweep(self, *, limit: int = 200) -> SweepReport:
        """Apply stage timeouts and expire claim leases; safe in many processes at once
        (rows another sweeper holds are skipped)."""
        report = SweepReport()
        if not self._anything_due():  # most ticks: no write transaction, no writer taken
            return report
        with self._write() as tx:
            due = tx.conn.execute(
                _due(limit).with_for_update(skip_locked=True), {"now": tx.now}
            ).mappings().all()
            for r in due:
                self._timeout(tx, dict(r), report)
            leases = tx.conn.execute(
                _lapsed(limit).with_for_update(skip_locked=True), {"now": tx.now}
            ).mappings().all()
            for r in leases:
                self._transition(
                    tx, dict(r), State.UNKNOWN, actor="system",
                    data={"why": "claim lease passed with no outcome"},
                    values={"reason": "the claim lease passed with no outcome reported",
                            "lease_expires_at": None},
                )
                report.unknown.append(r["id"])
        return report

    def _anything_due(self) -> bool:
        """Whether a stage deadline or a claim lease has passed, read outside any write: the
        sweep's own transaction reads again, under its locks."""
        now = self.clock.now()
        with self._read() as conn:
            return any(conn.execute(query(1), {"now": now}).first() is not None
                       for query in (_due, _lapsed))

    def _timeout(self, tx: Tx, row: Row, report: SweepReport) -> None:
        reqs = requirements_of(row["requirements"])
        progress = json.loads(row["progress"])
        due = quorum.timed_out(reqs, progress, tx.now)
        if not due:
            return
        rid = row["id"]
        labels = {(gi, si): quorum.label(reqs, gi, si) for gi, si, _ in due}
        refuse = [(gi, si) for gi, si, a in due if a is OnTimeout.DENY]
        approve = [(gi, si) for gi, si, a in due if a is OnTimeout.APPROVE]
        if approve and row["risk"] != Risk.LOW.value:
            reason = (f"timed out at {labels[approve[0]]}: on_timeout approve applies only to "
                      f"low risk, this request is {row['risk']}")
            refuse = approve
        elif refuse:
            reason = f"timed out at {labels[refuse[0]]}"
        if refuse:
            self._transition(tx, row, State.EXPIRED, actor="system",
                             data={"why": reason, "stages": [labels[s] for s in refuse]},
                             values={"reason": reason, "deadline": None, "decided_at": tx.now})
            report.expired.append(rid)
            return
        escalated = []
        for gi, si, action in due:
            if action is OnTimeout.ESCALATE:
                quorum.escalate(reqs, progress, gi, si, tx.now)
                escalated.append(labels[(gi, si)])
            else:
                quorum.complete(reqs, progress, gi, si, tx.now)
        values = {"progress": dumps(progress), "deadline": quorum.deadline(progress)}
        if approve:
            tx.audit("system", "timeout.approve", {"stages": [labels[s] for s in approve]},
                     request_id=rid, digest=row["digest"])
        if escalated:
            row = self._bump(tx, row, actor="system", event="escalated",
                             data={"stages": escalated, "to": list(_escalate_to(reqs, due))},
                             values=values)
            report.escalated.append(rid)
        if quorum.met(progress):
            values.update(decided_at=tx.now, deadline=None,
                          ttl_expires_at=tx.now + reqs.approval_ttl)
            self._transition(tx, row, State.APPROVED, actor="system",
                             data={"why": "on_timeout approve"}, values=values)
            report.approved.append(rid)
        elif approve and not escalated:
            self._bump(tx, row, actor="system", event="stage.completed",
                       data={"why": "on_timeout approve"}, values=values)


def _escalate_to(reqs: Requirements, due: list[tuple[int, int, OnTimeout]]) -> list[str]:
    out: list[str] = []
    for gi, _, action in due:
        if action is OnTimeout.ESCALATE:
            out.extend(a for a in reqs.gates[gi].escalate_to if a not in out)
    return out


def _due(limit: int) -> sa.Select[Any]:
    """Pending requests whose stage deadline has passed, the oldest first."""
    return (sa.select(t.requests)
            .where(t.in_state(State.PENDING.value),
                   t.requests.c.deadline <= sa.bindparam("now"))
            .order_by(t.requests.c.deadline).limit(limit))


def _lapsed(limit: int) -> sa.Select[Any]:
    """Executing requests whose claim lease has passed, the oldest first."""
    return (sa.select(t.requests)
            .where(t.in_state(State.EXECUTING.value),
                   t.requests.c.lease_expires_at <= sa.bindparam("now"))
            .order_by(t.requests.c.lease_expires_at).limit(limit))
