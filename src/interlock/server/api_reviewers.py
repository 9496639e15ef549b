"""The reviewers' side of `/v1`: decide, delegate, resolve, review, rate, batches, the queue.

Who may decide is the request's requirements' business (checked in the store's transaction);
who may resolve, review or rate is anyone among the request's approvers, or an admin.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request as HttpRequest
from starlette.responses import Response

from interlock.errors import BadInput, Forbidden
from interlock.gateway import Principal
from interlock.server.api import (
    Endpoint,
    Param,
    body_json,
    caller,
    ctx,
    ok,
    path_id,
    query_int,
    run,
)
from interlock.server.auth import asked_for, check_may_act_on, may_act_on
from interlock.server.models import (
    AnnotationOut,
    BatchDecisionIn,
    BatchOut,
    DecisionIn,
    DelegateIn,
    FeedbackIn,
    QueueOut,
    RequestOut,
    ResolveIn,
    ReviewIn,
    annotation_out,
)
from interlock.store import Request, State
from interlock.store.quorum import allowed_stages

QUEUE_KINDS = ("approval", "review", "suggested", "unknown")


def _not_own_gate(r: Request, who: Principal) -> None:
    """An admin never approves the interlock change they asked for themselves."""
    if asked_for(r, who):
        raise Forbidden(f"`{who.name}` asked for request `{r.id}` and may not decide it",
                        code="self_approval")


async def decision(request: HttpRequest) -> Response:
    who = await caller(request, "reviewer")
    rid = path_id(request)
    body, _ = await body_json(request, DecisionIn)
    c = ctx(request)

    def work() -> dict[str, Any]:
        _not_own_gate(c.gateway.get(rid, who), who)
        r = c.gateway.decide(rid, who, body.verdict, version=body.version, note=body.note,
                             args=body.args, confirmation=body.confirmation,
                             remember=None if body.remember is None
                             else body.remember.model_dump())
        return c.request_json(r)

    return ok(await run(work))


async def delegate(request: HttpRequest) -> Response:
    who = await caller(request, "reviewer")
    rid = path_id(request)
    body, _ = await body_json(request, DelegateIn)
    to = [body.to] if isinstance(body.to, str) else body.to
    c = ctx(request)

    def work() -> dict[str, Any]:
        c.gateway.get(rid, who)  # 404 for what this caller may not see
        return c.request_json(c.gateway.delegate(rid, who, to, body.version))

    return ok(await run(work))


async def resolve(request: HttpRequest) -> Response:
    who = await caller(request, "reviewer")
    rid = path_id(request)
    body, _ = await body_json(request, ResolveIn)
    c = ctx(request)

    def work() -> dict[str, Any]:
        check_may_act_on(who, c.gateway.get(rid, who), c.gateway.policy.defaults.approvers)
        return c.request_json(c.gateway.resolve(rid, who, body.status, body.note))

    return ok(await run(work))


async def review(request: HttpRequest) -> Response:
    who = await caller(request, "reviewer")
    rid = path_id(request)
    body, _ = await body_json(request, ReviewIn)
    c = ctx(request)

    def work() -> dict[str, Any]:
        r = c.gateway.get(rid, who)
        check_may_act_on(who, r, c.gateway.policy.defaults.approvers)
        note = c.gateway.review(rid, who, body.verdict, note=body.note)
        c.hub.changed([rid])
        return annotation_out(note).model_dump()

    return ok(await run(work))


async def feedback(request: HttpRequest) -> Response:
    who = await caller(request, "reviewer")
    rid = path_id(request)
    body, _ = await body_json(request, FeedbackIn)
    c = ctx(request)

    def work() -> dict[str, Any]:
        r = c.gateway.get(rid, who)
        check_may_act_on(who, r, c.gateway.policy.defaults.approvers)
        note = c.gateway.rate(rid, who, body.rating, correction=body.correction,
                              note=body.note)
        return annotation_out(note).model_dump()

    return ok(await run(work))


async def batch_decision(request: HttpRequest) -> Response:
    who = await caller(request, "reviewer")
    batch_id = path_id(request, "batch_id")
    body, _ = await body_json(request, BatchDecisionIn)
    if body.verdict == "each" and not body.items:
        raise BadInput("`each` needs `items`: {request id: approve|deny|request_changes}")
    c = ctx(request)

    def work() -> dict[str, Any]:
        for r in c.gateway.store.list_requests(batch_id=batch_id, agent=body.agent, limit=1000):
            _not_own_gate(r, who)
        done = c.gateway.decide_batch(
            batch_id, who, body.verdict, items=body.items, note=body.note,
            confirmation=body.confirmation, agent=body.agent,
        )
        return {"batch_id": batch_id, "results": done.results, "skipped": done.skipped}

    return ok(await run(work))


def _queue(request: HttpRequest, who: Principal, kind: str, limit: int) -> list[dict[str, Any]]:
    c = ctx(request)
    store = c.gateway.store
    defaults = c.gateway.policy.defaults.approvers
    states = {
        "approval": (State.PENDING,), "review": (State.SUCCEEDED, State.FAILED),
        "suggested": (State.SUGGESTED,), "unknown": (State.UNKNOWN,),
    }[kind]
    found: list[Request] = []
    for state in states:
        after: str | None = None
        scanned = 0
        while len(found) < limit and scanned < 20_000:
            page = store.list_requests(state=state, limit=500, after=after)
            if not page:
                break
            scanned += len(page)
            after = page[-1].id
            for r in page:
                if _fits(r, who, kind, defaults, store.annotations):
                    found.append(r)
    found.sort(key=lambda r: r.id)
    return [c.request_json(r) for r in found[:limit]]


def _fits(r: Request, who: Principal, kind: str, defaults: tuple[str, ...], notes: Any) -> bool:
    if r.agent == who.name:
        return False
    if kind == "approval":
        if r.requirements is None or asked_for(r, who):
            return False
        return bool(allowed_stages(r.requirements, r.progress, who.reviewer))
    if not may_act_on(who, r, defaults):
        return False
    if kind == "review":
        return r.decision.value == "notify" and not any(a.kind == "review" for a in notes(r.id))
    return True


async def queue(request: HttpRequest) -> Response:
    who = await caller(request, "reviewer")
    kind = request.query_params.get("kind", "approval")
    if kind not in QUEUE_KINDS:
        raise BadInput(f"`kind` is one of {', '.join(QUEUE_KINDS)}, not `{kind}`")
    limit = query_int(request, "limit", 100, 1, 500)
    items = await run(_queue, request, who, kind, limit)
    return ok({"kind": kind, "items": items})


_ID = "/v1/actions/{id}"
_R = ("reviewer",)
_T = ("reviewers",)

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(method="POST", path=_ID + "/decision", handler=decision,
             summary="Vote: approve (maybe with edited args), deny or request changes",
             roles=_R, body=DecisionIn, response=RequestOut, errors=(404, 409), tags=_T),
    Endpoint(method="POST", path=_ID + "/delegate", handler=delegate,
             summary="Add reviewers to the current stage", roles=_R, body=DelegateIn,
             response=RequestOut, errors=(404, 409), tags=_T),
    Endpoint(method="POST", path=_ID + "/resolve", handler=resolve,
             summary="Close a suggested action, or an unknown outcome", roles=_R,
             body=ResolveIn, response=RequestOut, errors=(404, 409), tags=_T),
    Endpoint(method="POST", path=_ID + "/review", handler=review,
             summary="Post-execution review of a finished request", roles=_R, body=ReviewIn,
             response=AnnotationOut, errors=(404, 409), tags=_T),
    Endpoint(method="POST", path=_ID + "/feedback", handler=feedback,
             summary="Rate how the gate decided", roles=_R, body=FeedbackIn,
             response=AnnotationOut, errors=(404, 409), tags=_T),
    Endpoint(method="POST", path="/v1/batches/{batch_id}/decision", handler=batch_decision,
             summary="approve_all, reject_all, or each item of a batch", roles=_R,
             body=BatchDecisionIn, response=BatchOut, errors=(404,), tags=_T),
    Endpoint(method="GET", path="/v1/queue", handler=queue,
             summary="What this reviewer may act on, oldest first", roles=_R,
             response=QueueOut, tags=_T,
             query=(Param(name="kind", description="approval, review, suggested or unknown",
                          schema={"type": "string", "enum": list(QUEUE_KINDS)}),
                    Param(name="limit", description="at most this many items (1-500)",
                          schema={"type": "integer", "minimum": 1, "maximum": 500}))),
)
