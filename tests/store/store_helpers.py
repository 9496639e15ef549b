"""Builders shared by the store tests: reviewers, gates, policy results, requests in a state.

Plain functions, imported by the test modules (pytest puts this folder on sys.path).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from interlock.policy.records import (
    Decision,
    Gate,
    OnTimeout,
    PolicyResult,
    Requirements,
    Risk,
    Stage,
)
from interlock.store import Request, Reviewer, Store

# -- builders --------------------------------------------------------------------------

LEAD = Reviewer(name="lena", groups=("tech-lead",))
LEAD2 = Reviewer(name="liam", groups=("tech-lead",))
SEC = Reviewer(name="sara", groups=("security",))
MGR = Reviewer(name="max", groups=("manager",))
OUTSIDER = Reviewer(name="olga", groups=("marketing",))


def gate(
    source: str = "production-approval",
    stages: Sequence[tuple[str, Sequence[str], int]] = (("approval", ("tech-lead",), 1),),
    *,
    timeout: float = 3600,
    on_timeout: OnTimeout = OnTimeout.DENY,
    ttl: float = 300,
    escalate_to: Sequence[str] = (),
    parallel: bool = False,
) -> Gate:
    return Gate(
        source=source,
        stages=tuple(Stage(name=n, approvers=tuple(a), quorum=q) for n, a, q in stages),
        parallel=parallel, timeout=timeout, on_timeout=on_timeout,
        escalate_to=tuple(escalate_to), approval_ttl=ttl,
    )


def result(
    decision: Decision = Decision.REQUIRE_APPROVAL,
    *gates: Gate,
    risk: Risk = Risk.HIGH,
) -> PolicyResult:
    reqs = None
    if decision is Decision.REQUIRE_APPROVAL:
        reqs = Requirements(gates=gates or (gate(),))
    return PolicyResult(decision=decision, rules=("r",), reasons=("rule r",), risk=risk,
                        requirements=reqs, policy_hash="p" * 64)


def action(name: str = "deploy", **extra: Any) -> dict[str, Any]:
    return {"action": name, "args": {"service": "api"}, "environment": "production", **extra}


def submit(store: Store, res: PolicyResult | None = None, agent: str = "ops-agent",
           **extra: Any) -> Request:
    return store.submit(agent=agent, action=action(**extra), result=res or result())


def approved(store: Store, agent: str = "ops-agent") -> Request:
    r = submit(store, agent=agent)
    return store.vote(r.id, reviewer=LEAD, verdict="approve")


def claim_worker(url: str, connect_args: dict[str, Any], now: float, barrier: Any,
                 tasks: Any, results: Any) -> None:
    """A long-lived process that claims each request id it is given, all at once with its
    peers (they meet at `barrier`), and reports `won` or the Conflict code."""
    from interlock.clock import FakeClock
    from interlock.errors import Conflict
    from interlock.store import open_store

    store = open_store(url, connect_args=connect_args, clock=FakeClock(now))
    try:
        while (rid := tasks.get()) is not None:
            barrier.wait()
            try:
                store.claim(rid, agent="ops-agent", lease=60)
                results.put((rid, "won"))
            except Conflict as exc:
                results.put((rid, exc.code))
    finally:
        store.close()
