"""The operators' side: the audit trail and its check, insights, the kill switch, liveness
and metrics.

Insights are computed by `interlock.insights` (figures, then advice with policy diffs); an
admin applies an advice item to the policy file the server runs, which then decides with it.
"""

from __future__ import annotations

import os
from typing import Any

from starlette.requests import Request as HttpRequest
from starlette.responses import PlainTextResponse, Response

from interlock.errors import BadInput
from interlock.insights.advice import payload
from interlock.insights.apply import apply_advice
from interlock.insights.figures import GROUPINGS, GroupBy, parse_window, report
from interlock.server.api import Endpoint, Param, body_json, caller, ctx, ok, query_int, run
from interlock.server.models import (
    AppliedOut,
    ApplyAdviceIn,
    AuditOut,
    HealthOut,
    InsightsOut,
    PauseIn,
    PauseOut,
    PausesOut,
    UnpauseIn,
    VerifyOut,
    entry_out,
)
from interlock.store import Pause


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


async def insights(request: HttpRequest) -> Response:
    """Figures per rule, action or agent over a window, and gate-tuning advice."""
    await caller(request, "reviewer")
    window = parse_window(request.query_params.get("window", "7d"))
    by = request.query_params.get("by", "rule")
    if by not in GROUPINGS:
        raise BadInput(f"`by` is one of {', '.join(GROUPINGS)}, not `{by}`")
    gateway = ctx(request).gateway
    group: GroupBy = by

    def compute() -> dict[str, Any]:
        return payload(report(gateway.store, window=window, by=group), gateway.policy.file)

    return ok(await run(compute))


async def apply(request: HttpRequest) -> Response:
    """Apply one advice item: a tightening at once, a loosening once a second admin approves."""
    who = await caller(request, "admin")
    body, _ = await body_json(request, ApplyAdviceIn)
    window = parse_window(body.window)
    c = ctx(request)
    gateway = c.gateway

    def work() -> dict[str, Any]:
        done = apply_advice(gateway.store, policy_file=gateway.policy.file,
                            advice_id=body.advice_id, admin=who.name, window=window,
                            reason=body.reason, swap=gateway.swap_policy,
                            served_hash=gateway.policy.hash)
        pending = gateway.store.get(done.request_id) if done.request_id else None
        return {"status": done.status, "advice_id": done.advice_id, "kind": done.kind,
                "policy_file": os.path.basename(done.file), "diff": done.diff,
                "old_hash": done.old_hash, "new_hash": done.new_hash,
                "request": c.request_json(pending) if pending is not None else None}

    return ok(await run(work))


def _pause_out(p: Pause) -> dict[str, Any]:
    return PauseOut(agent=p.agent, reason=p.reason, actor=p.actor, at=p.at).model_dump()


def _pauses(found: list[Pause]) -> dict[str, Any]:
    return {"pauses": [_pause_out(p) for p in found]}


async def pauses(request: HttpRequest) -> Response:
    await caller(request, "reviewer")
    return ok(_pauses(await run(ctx(request).gateway.store.pauses)))


async def pause(request: HttpRequest) -> Response:
    """The kill switch: every new action of the agent (or of all) is denied with `reason`;
    pending requests stay as they are. Every server on the database sees it at once."""
    who = await caller(request, "admin")
    body, _ = await body_json(request, PauseIn)
    store = ctx(request).gateway.store
    done = await run(store.pause, agent=body.agent, reason=body.reason,
                     actor=f"admin:{who.name}")
    return ok(_pause_out(done))


async def unpause(request: HttpRequest) -> Response:
    """Lift one pause; answers with the pauses still in force (an agent's own pause and
    everyone's are separate switches)."""
    who = await caller(request, "admin")
    body, _ = await body_json(request, UnpauseIn)
    store = ctx(request).gateway.store

    def work() -> dict[str, Any]:
        store.unpause(agent=body.agent, actor=f"admin:{who.name}")
        return _pauses(store.pauses())

    return ok(await run(work))


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
             response=InsightsOut, tags=_T,
             query=(Param(name="window", description="how far back, e.g. `7d`, `12h`",
                          schema={"type": "string"}),
                    Param(name="by", description="group figures by rule, action or agent",
                          schema={"type": "string", "enum": ["rule", "action", "agent"]}))),
    Endpoint(method="POST", path="/v1/insights/apply", handler=apply,
             summary="Apply an advice item to the policy file: a tightening at once, a "
             "loosening as a request a second admin approves", roles=("admin",),
             body=ApplyAdviceIn, response=AppliedOut, errors=(404, 409), tags=_T),
    Endpoint(method="GET", path="/v1/pauses", handler=pauses,
             summary="The kill switches that are on", roles=("reviewer",), response=PausesOut,
             tags=_T),
    Endpoint(method="POST", path="/v1/pause", handler=pause,
             summary="The kill switch: deny every new action of an agent, or of every agent, "
             "until unpaused", roles=("admin",), body=PauseIn, response=PauseOut, tags=_T),
    Endpoint(method="POST", path="/v1/unpause", handler=unpause,
             summary="Lift a pause; answers with the pauses still on", roles=("admin",),
             body=UnpauseIn, response=PausesOut, tags=_T),
    Endpoint(method="GET", path="/healthz", handler=healthz, summary="Liveness", roles=(),
             response=HealthOut, tags=_T),
    Endpoint(method="GET", path="/metrics", handler=metrics, summary="Prometheus metrics",
             roles=(), content_type="text/plain", tags=_T),
)
