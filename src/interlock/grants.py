"""Decision memory (SPEC §3 rule 6): which grants may turn a `require_approval` into `allow`.

A grant applies only where its granter alone could have approved the new request (one
gate, one stage, quorum 1, the granter among its approvers, no typed confirmation), and
never to `deny`, `suggest` or anything but `require_approval`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from interlock.errors import BadInput
from interlock.policy.match import compile_glob
from interlock.policy.records import Decision, PolicyResult, Requirements
from interlock.store import Request, Reviewer
from interlock.store.grants import Grant, GrantScope, NewGrant

SCOPES: tuple[GrantScope, ...] = ("agent_action", "run", "until")


def alone_could_approve(reqs: Requirements | None, reviewer: Reviewer) -> bool:
    """Whether one approval by `reviewer` would complete these requirements."""
    if reqs is None or len(reqs.gates) != 1:
        return False
    gate = reqs.gates[0]
    if gate.confirm or len(gate.stages) != 1 or gate.stages[0].quorum != 1:
        return False
    approvers = set(gate.stages[0].approvers)
    return f"user:{reviewer.name}" in approvers or any(g in approvers for g in reviewer.groups)


def _arg(args: Mapping[str, Any], path: str) -> tuple[bool, Any]:
    value: Any = args
    for part in path.removeprefix("args.").split("."):
        if not isinstance(value, Mapping) or part not in value:
            return False, None
        value = value[part]
    return True, value


def args_match(pattern: Mapping[str, Any] | None, args: Any) -> bool:
    """Every `{path: glob or literal}` holds for `args` (a string value is a glob)."""
    if not pattern:
        return True
    if not isinstance(args, Mapping):
        return False
    for path, want in pattern.items():
        found, value = _arg(args, path)
        if not found:
            return False
        if isinstance(want, str):
            if not isinstance(value, str) or not compile_glob(want)(value):
                return False
        elif value != want or type(value) is not type(want):
            return False
    return True


def _run_id(action: Mapping[str, Any]) -> str | None:
    context = action.get("context")
    run_id = context.get("run_id") if isinstance(context, Mapping) else None
    return run_id if isinstance(run_id, str) else None


def covers(grant: Grant, action: Mapping[str, Any], now: float) -> bool:
    """Whether a grant covers this action (agent, name, run, args, time)."""
    if not grant.active(now) or grant.agent != action.get("agent") or (
        grant.action != action.get("action")
    ):
        return False
    if grant.scope == "run" and grant.run_id != _run_id(action):
        return False
    return args_match(grant.args_pattern, action.get("args"))


def apply(
    result: PolicyResult, action: Mapping[str, Any], grants: Iterable[Grant], now: float
) -> tuple[PolicyResult, Grant | None]:
    """The result with the first applicable grant applied, and that grant (or None)."""
    if result.decision is not Decision.REQUIRE_APPROVAL:
        return result, None
    for grant in grants:
        granter = Reviewer(name=grant.reviewer, groups=grant.groups)
        if grant.reviewer == action.get("agent"):
            continue
        if covers(grant, action, now) and alone_could_approve(result.requirements, granter):
            return replace(
                result, decision=Decision.ALLOW, requirements=None,
                reasons=(*result.reasons, f"grant {grant.id} by {grant.reviewer}"),
            ), grant
    return result, None


def parse_time(value: Any) -> float:
    """Epoch seconds, or an ISO 8601 time (UTC when it names no zone)."""
    if isinstance(value, bool):
        raise BadInput("`until` is epoch seconds or an ISO 8601 time")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
        try:
            when = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise BadInput(f"`until` is epoch seconds or an ISO 8601 time, not `{value}`"
                           ) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        return when.timestamp()
    raise BadInput("`until` is epoch seconds or an ISO 8601 time")


def new_grant(
    remember: Mapping[str, Any], request: Request, reviewer: Reviewer, now: float
) -> NewGrant:
    """Check an "approve and remember" against the request before anything is written."""
    scope = remember.get("scope")
    if scope not in SCOPES:
        raise BadInput(f"`remember.scope` is one of {', '.join(SCOPES)}, not `{scope}`")
    if not alone_could_approve(request.requirements, reviewer):
        raise BadInput(
            "a grant is only possible where one reviewer alone approves (one stage, quorum 1, "
            f"no typed confirmation, you among its approvers); request `{request.id}` needs "
            "more, so nothing was approved"
        )
    until = remember.get("until")
    expires_at = None if until is None else parse_time(until)
    if scope == "until" and expires_at is None:
        raise BadInput("`remember.scope: until` needs `until` (epoch seconds or ISO time)")
    if expires_at is not None and expires_at <= now:
        raise BadInput("`remember.until` is in the past")
    run_id = None
    if scope == "run":
        run_id = _run_id(request.action)
        if run_id is None:
            raise BadInput(f"request `{request.id}` has no `context.run_id` to remember")
    pattern = remember.get("args_pattern")
    if pattern is not None and (not isinstance(pattern, Mapping) or not all(
        isinstance(k, str) and k and (v is None or isinstance(v, str | int | float | bool))
        for k, v in pattern.items()
    )):
        raise BadInput("`remember.args_pattern` is {path: glob or literal}")
    return NewGrant(scope=scope, run_id=run_id,
                    args_pattern=None if pattern is None else dict(pattern),
                    expires_at=expires_at)
