"""The reviewers' side for the framework adapter tests: a gateway on the agent's database,
as `interlock serve` would be, with one finance reviewer who approves, edits or denies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from interlock.gateway import Gateway, Principal
from interlock.policy import load_policy
from interlock.store import Request, State, open_store

RITA = Principal(role="reviewer", name="rita", groups=("finance",))


class Desk:
    """The reviewers' side: a gateway on the same database, as `interlock serve` would be."""

    def __init__(self, policy: Path, db: str) -> None:
        self.store = open_store(db)
        self.gateway = Gateway(load_policy(policy), self.store)

    def get(self, request_id: str) -> Request:
        return self.store.get(request_id)

    def pending(self) -> list[str]:
        return [r.id for r in self.store.list_requests(state=State.PENDING)]

    def only_pending(self) -> str:
        [request] = self.store.list_requests(state=State.PENDING)
        return request.id

    def approve(self, request_id: str, args: dict[str, Any] | None = None) -> None:
        self.gateway.decide(request_id, RITA, "approve", note="ok", args=args)

    def deny(self, request_id: str, reason: str) -> None:
        self.gateway.decide(request_id, RITA, "deny", note=reason)

    def close(self) -> None:
        self.store.close()
