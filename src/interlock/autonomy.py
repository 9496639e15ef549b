"""An admin setting or pinning an agent's autonomy level: a gate on the gate (SPEC §8).

The change is stored as an `autonomy.set` action of the built-in `interlock` agent, which
a second admin approves like any request; it is then applied once, by claiming it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from interlock.errors import BadInput, Conflict, Forbidden
from interlock.policy import Policy
from interlock.policy.records import (
    Decision,
    Gate,
    Level,
    OnTimeout,
    PolicyResult,
    Requirements,
    Risk,
    Stage,
)
from interlock.store import Claim, Request, State, Store
from interlock.store.autonomy import INTERLOCK_AGENT, current_level

__all__ = ["INTERLOCK_AGENT", "AgentLevel", "agent_levels", "apply", "propose"]
#: The action name of a gated level change.
SET_ACTION = "autonomy.set"
GATE_RULE = "gates-on-the-gate"
_DAY = 24 * 3600.0


@dataclass(frozen=True, kw_only=True)
class AgentLevel:
    """An agent's autonomy as the policy will use it, and its track record."""

    name: str
    """Agent name."""
    level: str | None
    """The level in force (None: the policy has no `autonomy` section)."""
    stored: str | None
    """The level the store holds (None: the policy's configured level applies)."""
    pinned: bool
    """A pinned level never moves on promotion or demotion."""
    clean_approvals: int
    """Clean approvals counted toward the next promotion."""
    promote_after: int | None
    """Clean approvals a promotion needs (None: no `autonomy` section)."""
    approvals: int
    """Requests approved."""
    denials: int
    """Requests denied by a reviewer."""
    reversals: int
    """Post-execution reviews that reversed one."""
    failures_after_approval: int
    """Approved requests whose outcome failed."""

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def agent_levels(store: Store, policy: Policy, name: str | None = None) -> list[AgentLevel]:
    """Every agent the store has seen or the policy names (or just `name`), by name."""
    rules = policy.autonomy
    seen = {a.name: a for a in store.agents() if name is None or a.name == name}
    names = set(seen)
    if name is not None:
        names.add(name)
    elif rules is not None:
        names.update(rules.agents)
    out = []
    for n in sorted(names - {INTERLOCK_AGENT}):
        a = seen.get(n)
        stored = a.level if a is not None else None
        out.append(AgentLevel(
            name=n, stored=stored,
            level=None if rules is None else current_level(rules, n, stored).value,
            pinned=bool(a and a.pinned), clean_approvals=a.clean_approvals if a else 0,
            promote_after=None if rules is None else rules.promote_after,
            approvals=a.approvals if a else 0, denials=a.denials if a else 0,
            reversals=a.reversals if a else 0,
            failures_after_approval=a.failures_after_approval if a else 0,
        ))
    return out


def gate_result(
    policy_hash: str, reason: str,
    guidance: str = "An autonomy level decides which actions run without asking: check "
    "that this agent has earned it.",
) -> PolicyResult:
    """The requirements of one of interlock's own gated changes (an autonomy level, a
    policy change, a token): one approval by a second admin, within a day."""
    gate = Gate(source=GATE_RULE,
                stages=(Stage(name="second-admin", approvers=("admin",), quorum=1),),
                timeout=_DAY, on_timeout=OnTimeout.DENY, approval_ttl=_DAY, guidance=guidance)
    return PolicyResult(
        decision=Decision.REQUIRE_APPROVAL, rules=(GATE_RULE,), reasons=(reason,),
        risk=Risk.HIGH, requirements=Requirements(gates=(gate,)), policy_hash=policy_hash,
    )


def require_second_admin(store: Store, asker: str, what: str) -> None:
    """403 `no_second_admin` unless a live admin token other than the asker's exists: a
    gated change nobody could approve would only wait for its timeout."""
    now = store.clock.now()
    if not any(t.kind == "admin" and t.revoked_at is None and t.name != asker
               and (t.expires_at is None or t.expires_at > now) for t in store.tokens()):
        raise Forbidden(f"{what} needs a second admin's approval, and no other admin token "
                        "exists: create one with `interlock token create --admin NAME` first",
                        code="no_second_admin")


def parse_level(text: str) -> Level:
    try:
        return Level(text)
    except ValueError:
        raise BadInput(f"a level is one of {', '.join(lv.value for lv in Level)}, "
                       f"not `{text}`") from None


def propose(
    store: Store, *, agent: str, level: str, pinned: bool, reason: str | None,
    requested_by: str, policy_hash: str = "",
) -> Request:
    """Store the change as a pending `autonomy.set` request for a second admin."""
    chosen = parse_level(level)
    if not agent.strip() or agent == INTERLOCK_AGENT:
        raise BadInput(f"`{agent}` is not an agent whose level can be set")
    verb = "pin" if pinned else "set"
    return store.submit(
        agent=INTERLOCK_AGENT,
        action={"action": SET_ACTION, "agent": INTERLOCK_AGENT, "risk": "high",
                "args": {"agent": agent, "level": chosen.value, "pinned": pinned,
                         "why": reason, "requested_by": requested_by},
                "reason": f"{requested_by} asks to {verb} agent {agent} at {chosen.value}"
                + (f": {reason}" if reason else "")},
        result=gate_result(policy_hash, f"{verb}ting an autonomy level needs a second admin"),
    )


def is_gated_change(request: Request) -> bool:
    return request.agent == INTERLOCK_AGENT and request.action_name == SET_ACTION


def claim_approved(
    store: Store, request_id: str, *, is_change: Callable[[Request], bool], what: str
) -> tuple[Request, Claim | None]:
    """One of interlock's own changes, and the claim to carry it out when it is approved and
    this process is the one to apply it (None: nothing to do, the request says why)."""
    request = store.get(request_id)
    if not is_change(request):
        raise BadInput(f"request `{request_id}` is not {what}")
    if request.state is not State.APPROVED:
        return request, None
    try:
        return request, store.claim(request_id, agent=INTERLOCK_AGENT, lease=600.0)
    except Conflict:  # another process applied it first, or its approval went stale
        return store.get(request_id), None


def apply(store: Store, request_id: str) -> Request:
    """Apply an approved `autonomy.set` request once; any other state is left as it is."""
    request, claim = claim_approved(store, request_id, is_change=is_gated_change,
                                    what="an autonomy change")
    if claim is None:
        return request
    args = claim.args
    store.set_level(str(args["agent"]), Level(str(args["level"])),
                    actor=f"admin:{args.get('requested_by')}", pinned=bool(args.get("pinned")),
                    why=args.get("why"))
    return store.outcome(request_id, agent=INTERLOCK_AGENT, status="succeeded",
                         summary=f"agent {args['agent']} set to {args['level']}"
                         + (" (pinned)" if args.get("pinned") else ""))
