"""The operators' side: the audit trail and its check, insights, liveness and metrics.

Insights here are figures a reviewer can act on at once: rates per rule and what to loosen
or tighten; time to decision comes from the requests themselves.
"""

from __future__ import annotations

import statistics
from collections import Counter
from typing import Any

from starlette.requests import Request as HttpRequest
from starlette.responses import PlainTextResponse, Response

from interlock.server.api import Endpoint, Param, caller, ctx, ok, query_int, run
from interlock.server.models import (
    AuditOut,
    HealthOut,
    InsightsOut,
    VerifyOut,
    entry_out,
)
from interlock.store import Request, State, Store

#: A rule approved this often (with at least this many decisions, no edits) can loosen.
LOOSEN_RATE, LOOSEN_MIN = 0.95, 20
#: A rule denied this often can tighten (deny instead of asking).
TIGHTEN_RATE = 0.5


async def audit(request: HttpRequest) -> Response:
    await caller(request, "reviewer")
    after = query_int(request, "after", 0, 0, 2**62)
    limit = query_int(request, "limit", 100, 1, 1000)
    rid = request.query_params.get("request_id")
    actor = request.query_params.get("actor")
    store = ctx(request).gateway.store

    def work() -> dict[str, Any]:
        if rid:
            entries = [e for e in store.timeline(rid) if e.seq > after][:limit]
            more = False
        else:
            entries = []
            last = after
            more = True
            while len(entries) < limit and more:
                page = list(store.audit_entries(after=last, limit=1000))
                more = len(page) == 1000
                if page:
                    last = page[-1].seq
                entries += [e for e in page if actor is None or e.actor == actor]
            if len(entries) > limit:
                entries, more = entries[:limit], True
        if actor is not None:
            entries = [e for e in entries if e.actor == actor]
        return {"entries": [entry_out(e).model_dump() for e in entries],
                "next_after": entries[-1].seq if entries and more else None}

    return ok(await run(work))


async def verify(request: HttpRequest) -> Response:
    await caller(request, "reviewer")
    anchor = request.query_params.get("anchor") or None
    report = await run(ctx(request).gateway.store.verify, anchor=anchor)
    return ok({"ok": report.ok, "checked": report.checked, "head_hash": report.head_hash,
               "bad_seq": report.bad_seq, "problem": report.problem})


def insights_of(store: Store, cap: int = 50_000) -> dict[str, Any]:
    """Rates, time to decision and advice over the newest `cap` requests."""
    requests: list[Request] = []
    after: str | None = None
    while len(requests) < cap:
        page = store.list_requests(limit=1000, after=after)
        if not page:
            break
        requests += page
        after = page[-1].id
    by_decision = Counter(r.decision.value for r in requests)
    by_state = Counter(r.state.value for r in requests)
    gated = [r for r in requests if r.decision.value == "require_approval"]
    decided = [r for r in gated if r.decided_at is not None and r.state is not State.CANCELLED]
    approved = [r for r in decided if r.state not in (
        State.DENIED, State.EXPIRED, State.CHANGES_REQUESTED)]
    waits = sorted(r.decided_at - r.created_at for r in decided if r.decided_at is not None)
    per_rule: dict[str, dict[str, int]] = {}
    for r in decided:
        edited = r.final_args != r.action.get("args", {})
        ok_ = r in approved
        for rule in r.result.rules or ("(baseline)",):
            row = per_rule.setdefault(rule, {"decided": 0, "approved": 0, "denied": 0,
                                             "edited": 0})
            row["decided"] += 1
            row["approved"] += int(ok_)
            row["denied"] += int(r.state is State.DENIED)
            row["edited"] += int(edited)
    rules = []
    advice = []
    for name, row in sorted(per_rule.items()):
        rate = row["approved"] / row["decided"] if row["decided"] else None
        tip = None
        if rate is not None and row["decided"] >= LOOSEN_MIN and rate >= LOOSEN_RATE and (
                row["edited"] == 0):
            tip = (f"reviewers approved {row['approved']} of {row['decided']} unchanged: "
                   "consider loosening this gate")
        elif rate is not None and row["decided"] >= LOOSEN_MIN and (
                row["denied"] / row["decided"] >= TIGHTEN_RATE):
            tip = (f"reviewers denied {row['denied']} of {row['decided']}: consider denying "
                   "it in the policy instead of asking")
        if tip:
            advice.append(f"rule {name}: {tip}")
        rules.append({"rule": name, **row, "approval_rate": rate, "advice": tip})
    return {
        "total": len(requests), "by_decision": dict(by_decision), "by_state": dict(by_state),
        "approval_rate": len(approved) / len(decided) if decided else None,
        "time_to_decision_p50": statistics.median(waits) if waits else None,
        "time_to_decision_p90": waits[int(0.9 * (len(waits) - 1))] if waits else None,
        "rules": rules, "advice": advice,
    }


async def insights(request: HttpRequest) -> Response:
    await caller(request, "reviewer")
    return ok(await run(insights_of, ctx(request).gateway.store))


async def healthz(request: HttpRequest) -> Response:
    return ok({"status": "ok", "policy_hash": ctx(request).gateway.policy.hash})


async def metrics(request: HttpRequest) -> Response:
    c = ctx(request)
    text = await run(c.metrics.render, c.gateway.store)
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4")


_T = ("operations",)

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(method="GET", path="/v1/audit", handler=audit, summary="Audit entries, in order",
             roles=("reviewer",), response=AuditOut, tags=_T,
             query=(Param(name="after", description="entries after this sequence number",
                          schema={"type": "integer", "minimum": 0}),
                    Param(name="limit", description="at most this many (1-1000)",
                          schema={"type": "integer", "minimum": 1, "maximum": 1000}),
                    Param(name="request_id", description="only this request's entries",
                          schema={"type": "string"}),
                    Param(name="actor", description="only this actor's, e.g. `reviewer:ann`",
                          schema={"type": "string"}))),
    Endpoint(method="GET", path="/v1/audit/verify", handler=verify,
             summary="Walk the hash chain", roles=("reviewer",), response=VerifyOut, tags=_T,
             query=(Param(name="anchor", description="a head hash printed earlier",
                          schema={"type": "string"}),)),
    Endpoint(method="GET", path="/v1/insights", handler=insights,
             summary="Rates, time to decision, gate-tuning advice", roles=("reviewer",),
             response=InsightsOut, tags=_T),
    Endpoint(method="GET", path="/healthz", handler=healthz, summary="Liveness", roles=(),
             response=HealthOut, tags=_T),
    Endpoint(method="GET", path="/metrics", handler=metrics, summary="Prometheus metrics",
             roles=(), content_type="text/plain", tags=_T),
)
