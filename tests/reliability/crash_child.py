"""The process the crash test kills: a stream of submissions and decisions on one store.

After each commit it reports (request id, state) on a pipe, so reported means committed.
"""

from __future__ import annotations

import random
from typing import Any

from interlock.errors import InterlockError
from interlock.policy.records import (
    Decision,
    Gate,
    OnTimeout,
    PolicyResult,
    Requirements,
    Risk,
    Stage,
)
from interlock.store import Reviewer, open_store

AGENT = "crash-agent"
LEAD = Reviewer(name="lena", groups=("tech-lead",))
GATE = Gate(source="r", stages=(Stage(name="approval", approvers=("tech-lead",)),),
            timeout=3600, on_timeout=OnTimeout.DENY, approval_ttl=3600)
PENDING = PolicyResult(decision=Decision.REQUIRE_APPROVAL, rules=("r",), reasons=("rule r",),
                       risk=Risk.HIGH, requirements=Requirements(gates=(GATE,)))
ALLOW = PolicyResult(decision=Decision.ALLOW, rules=(), reasons=("baseline",), risk=Risk.LOW)


def run(url: str, connect_args: dict[str, Any], seed: int, out: Any) -> None:
    """Write forever (until killed), reporting each committed transition."""
    rng = random.Random(seed)
    store = open_store(url, connect_args=connect_args)
    out.send(("ready", ""))
    n = 0
    while True:
        n += 1
        act = {"action": "deploy", "args": {"n": n, "seed": seed},
               "idempotency_key": f"{seed}-{n}"}
        try:
            if rng.random() < 0.3:
                r = store.submit(agent=AGENT, action=act, result=ALLOW)
                out.send((r.id, r.state.value))
            else:
                r = store.submit(agent=AGENT, action=act, result=PENDING)
                out.send((r.id, r.state.value))
                verdict = rng.choice(["approve", "approve", "approve", "deny"])
                r = store.vote(r.id, reviewer=LEAD, verdict=verdict)  # type: ignore[arg-type]
                out.send((r.id, r.state.value))
                if verdict == "deny":
                    continue
            if rng.random() < 0.1:
                r = store.cancel(r.id, agent=AGENT)
                out.send((r.id, r.state.value))
                continue
            store.claim(r.id, agent=AGENT, lease=3600)
            out.send((r.id, "executing"))
            status = rng.choice(["succeeded", "failed"])
            r = store.outcome(r.id, agent=AGENT, status=status)  # type: ignore[arg-type]
            out.send((r.id, r.state.value))
        except InterlockError as exc:  # pragma: no cover - would be a bug; the test sees it
            out.send(("error", str(exc)))
