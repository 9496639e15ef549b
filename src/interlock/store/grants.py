"""Decision memory in the store (SPEC §3 rule 6): grants made by "approve and remember".

A grant is written in the transaction of the approval that made it, and each use in the
transaction of the request it let through; both are audited (listing and revoking: admin.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa

from interlock.errors import Conflict
from interlock.store import schema as t
from interlock.store.core import dumps, new_id
from interlock.store.records import Reviewer
from interlock.store.tx import Tx

GrantScope = Literal["agent_action", "run", "until"]


class GrantGone(Conflict):
    """The grant a decision relied on was revoked or expired in the meantime."""

    code = "grant_gone"


@dataclass(frozen=True, kw_only=True)
class NewGrant:
    """What a reviewer asked to remember, checked by the gateway."""

    scope: GrantScope
    """agent_action, run or until."""
    run_id: str | None = None
    """For `run`: the run the grant is limited to."""
    args_pattern: dict[str, Any] | None = None
    """`{path: glob or literal}` a later action's args must match."""
    expires_at: float | None = None
    """When it stops applying (None: until revoked)."""


@dataclass(frozen=True, kw_only=True)
class Grant:
    """A stored grant: this agent's action may run without asking, as `reviewer` approved."""

    id: str
    """ULID."""
    agent: str
    """The agent it lets through."""
    action: str
    """The action name it covers."""
    reviewer: str
    """Who granted it."""
    groups: tuple[str, ...]
    """The granter's groups when granting: a use needs the granter alone to be enough."""
    scope: GrantScope
    """agent_action, run or until."""
    run_id: str | None
    """For `run`: the run it is limited to."""
    args_pattern: dict[str, Any] | None
    """`{path: glob or literal}` a later action's args must match."""
    request_id: str | None
    """The approved request that made it."""
    created_at: float
    expires_at: float | None
    revoked_at: float | None

    def active(self, now: float) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)

    def to_json(self, now: float) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "groups"}
        out["active"] = self.active(now)
        return out


_LIVE = sa.select(t.grants.c.revoked_at, t.grants.c.expires_at).where(
    t.grants.c.id == sa.bindparam("grant_id"))

#: On the driver's cursor: a pipelined vote may write a grant.
_INSERT = t.grants.insert()


def insert(
    tx: Tx, new: NewGrant, *, agent: str, action: str, reviewer: Reviewer, request_id: str,
) -> Grant:
    """Write a grant made by an approval, in that approval's transaction."""
    grant = Grant(id=new_id(tx.now), agent=agent, action=action, reviewer=reviewer.name,
                  groups=reviewer.groups, scope=new.scope, run_id=new.run_id,
                  args_pattern=new.args_pattern, request_id=request_id,
                  created_at=tx.now, expires_at=new.expires_at, revoked_at=None)
    match = {"scope": new.scope, "run_id": new.run_id, "args_pattern": new.args_pattern,
             "groups": list(reviewer.groups), "request_id": request_id}
    tx.run(_INSERT, {"id": grant.id, "agent": agent, "action_name": action,
                     "match": dumps(match), "reviewer": reviewer.name, "created_at": tx.now,
                     "expires_at": new.expires_at})
    tx.audit(f"reviewer:{reviewer.name}", "grant.created",
             {"grant": grant.id, "agent": agent, "action": action, "scope": new.scope,
              "run_id": new.run_id, "args_pattern": new.args_pattern,
              "expires_at": new.expires_at}, request_id=request_id)
    return grant


def use(tx: Tx, grant: Grant, request_id: str, digest: str) -> None:
    """Audit a use, after checking (in this transaction) that the grant still holds."""
    row = tx.fetch_row(_LIVE, {"grant_id": grant.id})
    if row is None or row["revoked_at"] is not None or (
        row["expires_at"] is not None and row["expires_at"] <= tx.now
    ):
        raise GrantGone(f"grant `{grant.id}` was revoked or expired")
    tx.audit("policy", "grant.used",
             {"grant": grant.id, "reviewer": grant.reviewer, "agent": grant.agent,
              "action": grant.action}, request_id=request_id, digest=digest)


def from_row(r: dict[str, Any]) -> Grant:
    match = json.loads(r["match"])
    return Grant(id=r["id"], agent=r["agent"], action=r["action_name"], reviewer=r["reviewer"],
                 groups=tuple(match.get("groups") or ()), scope=match.get("scope", "until"),
                 run_id=match.get("run_id"), args_pattern=match.get("args_pattern"),
                 request_id=match.get("request_id"), created_at=r["created_at"],
                 expires_at=r["expires_at"], revoked_at=r["revoked_at"])
