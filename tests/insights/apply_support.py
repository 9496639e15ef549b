"""Helpers for the apply tests: the advice as the page shows it, admins, the audit entries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from interlock.insights.advice import payload
from interlock.insights.figures import report
from interlock.store import AuditEntry, Store

WEEK = 7 * 86400.0


def advice(store: Store, policy: Path | str, kind: str) -> dict[str, Any]:
    """The first advice item of `kind` over the last week, as `/v1/insights` answers it."""
    data = payload(report(store, window=WEEK), str(policy))
    found: dict[str, Any] = next(a for a in data["advice"] if a["kind"] == kind)
    return found


def admins(store: Store, *names: str) -> dict[str, str]:
    """An admin token per name: name -> secret."""
    return {n: store.create_token(kind="admin", name=n, actor="test")[1] for n in names}


def changes(store: Store) -> list[AuditEntry]:
    """Every `policy.changed` entry, oldest first."""
    return [e for e in store.audit_entries() if e.event == "policy.changed"]
