"""The agents' side of `/v1`: submit, read, wait, stream, claim, report an outcome, cancel.

An agent token reaches only its own requests (another agent's is a 404); reviewers may read
and stream any request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request as HttpRequest
from starlette.responses import Response, StreamingResponse

from interlock.gateway import Principal
from interlock.server.api import (
    Endpoint,
    Param,
    body_json,
    caller,
    ctx,
    grouped,
    ok,
    path_id,
    query_float,
    run,
)
from interlock.server.models import (
    ActionIn,
    CancelIn,
    ClaimOut,
    EvaluateOut,
    OutcomeIn,
    RequestOut,
    SubmitOut,
    WaitOut,
    annotation_out,
    claim_out,
    entry_out,
    vote_out,
)
from interlock.store import FINAL, Request, State

#: Longest `/wait` a client may ask for, in seconds.
MAX_WAIT = 60.0
#: Seconds between SSE keep-alive comments.
HEARTBEAT = 15.0


async def submit(request: HttpRequest) -> Response:
    who = await caller(request, "agent")
    _, data = await body_json(request, ActionIn)
    c = ctx(request)
    sub = await grouped(c, c.gateway.submit, data, who)
    r = sub.request
    c.metrics.observe_submit(r)
    return ok({
        "id": r.id, "decision": r.decision.value, "state": r.state.value,
        "reasons": list(r.result.reasons), "rules": list(r.result.rules),
        "risk": r.risk.value, "version": r.version, "digest": r.digest,
        "link": c.link(r), "confirmation_phrase": c.phrase(r),
    })


def _full(request: HttpRequest, rid: str, who: Principal) -> dict[str, Any]:
    c = ctx(request)
    r = c.gateway.get(rid, who)
    body = c.request_json(r)
    body["votes"] = [vote_out(v).model_dump() for v in c.gateway.votes(rid)]
    body["timeline"] = [entry_out(e).model_dump() for e in c.gateway.store.timeline(rid)]
    body["annotations"] = [
        annotation_out(a).model_dump() for a in c.gateway.store.annotations(rid)
    ]
    return body


async def get_action(request: HttpRequest) -> Response:
    who = await caller(request, "agent", "reviewer")
    rid = path_id(request)
    return ok(await run(_full, request, rid, who))


async def wait(request: HttpRequest) -> Response:
    who = await caller(request, "agent")
    rid = path_id(request)
    timeout = query_float(request, "timeout", 30.0, 0.0, MAX_WAIT)
    c = ctx(request)
    deadline = time.monotonic() + timeout
    while True:
        wake = c.hub.subscribe(rid)
        try:
            r = await run(c.gateway.get, rid, who)
            remaining = deadline - time.monotonic()
            if r.state is State.PENDING and remaining > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await wake.wait()
                # The committed request the change carried, if newer than the one read:
                # answered without a read back. Otherwise subscribe again and read.
                new = wake.request
                if new is None or new.version <= r.version or new.state is State.PENDING:
                    continue
                r = new
            body = c.request_json(r)
            body["changed"] = r.state is not State.PENDING
            return ok(body)
        finally:
            c.hub.unsubscribe(rid, wake)


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def events(request: HttpRequest) -> Response:
    who = await caller(request, "agent", "reviewer")
    rid = path_id(request)
    c = ctx(request)
    first = await run(c.gateway.get, rid, who)

    async def stream() -> AsyncIterator[bytes]:
        seen: tuple[str, int] | None = None
        current: Request = first
        while True:
            event = c.hub.subscribe(rid)
            try:
                if seen is not None:
                    current = await run(c.gateway.get, rid, who)
                if (current.state.value, current.version) != seen:
                    seen = (current.state.value, current.version)
                    yield _sse("state", c.request_json(current))
                if current.state in FINAL:
                    return
                try:
                    await asyncio.wait_for(event.wait(), HEARTBEAT)
                except TimeoutError:
                    yield b": keep-alive\n\n"
            finally:
                c.hub.unsubscribe(rid, event)

    return StreamingResponse(
        stream(), media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def claim(request: HttpRequest) -> Response:
    who = await caller(request, "agent")
    rid = path_id(request)
    c = ctx(request)
    done = await grouped(c, c.gateway.claim, rid, who)
    return ok(claim_out(done))


async def outcome(request: HttpRequest) -> Response:
    who = await caller(request, "agent")
    rid = path_id(request)
    body, _ = await body_json(request, OutcomeIn)
    c = ctx(request)
    r = await grouped(c, c.gateway.outcome, rid, who, body.status, body.summary)
    return ok(c.request_json(r))


async def cancel(request: HttpRequest) -> Response:
    who = await caller(request, "agent", "admin")  # admins: only a change they asked for
    rid = path_id(request)
    reason = None
    if (await request.body()).strip():
        body, _ = await body_json(request, CancelIn)
        reason = body.reason
    c = ctx(request)
    r = await grouped(c, c.gateway.cancel, rid, who, reason)
    return ok(c.request_json(r))


async def evaluate(request: HttpRequest) -> Response:
    who = await caller(request, "agent", "reviewer")
    _, data = await body_json(request, ActionIn)
    c = ctx(request)
    result = await run(c.gateway.evaluate, data, who)
    return ok(result.to_json())


_ID = "/v1/actions/{id}"
_COMMON = (404,)

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(method="POST", path="/v1/actions", handler=submit, summary="Submit an action",
             roles=("agent",), body=ActionIn, response=SubmitOut, errors=(404, 409, 429),
             tags=("agents",)),
    Endpoint(method="GET", path=_ID, handler=get_action,
             summary="A request with its state, votes and timeline",
             roles=("agent", "reviewer"), response=RequestOut, errors=_COMMON,
             tags=("agents", "reviewers")),
    Endpoint(method="GET", path=_ID + "/wait", handler=wait,
             summary="Long-poll until the request leaves pending (or the timeout passes)",
             roles=("agent",), response=WaitOut, errors=_COMMON,
             query=(Param(name="timeout", description="seconds to wait, at most 60",
                          schema={"type": "number", "minimum": 0, "maximum": 60}),),
             tags=("agents",)),
    Endpoint(method="GET", path=_ID + "/events", handler=events,
             summary="Server-sent events: one `state` event per change, until it ends",
             roles=("agent", "reviewer"), content_type="text/event-stream", errors=_COMMON,
             tags=("agents", "reviewers")),
    Endpoint(method="POST", path=_ID + "/claim", handler=claim,
             summary="Claim a decided request, exactly once", roles=("agent",),
             response=ClaimOut, errors=(404, 409, 410), tags=("agents",)),
    Endpoint(method="POST", path=_ID + "/outcome", handler=outcome,
             summary="Report how a claimed action went", roles=("agent",), body=OutcomeIn,
             response=RequestOut, errors=(404, 409), tags=("agents",)),
    Endpoint(method="POST", path=_ID + "/cancel", handler=cancel,
             summary="Withdraw a request before claiming it (an admin: a change to interlock "
             "they asked for)", roles=("agent", "admin"),
             body=CancelIn, response=RequestOut, errors=(403, 404, 409), tags=("agents",)),
    Endpoint(method="POST", path="/v1/evaluate", handler=evaluate,
             summary="The policy's decision and explanation, storing nothing",
             roles=("agent", "reviewer"), body=ActionIn, response=EvaluateOut,
             tags=("agents", "reviewers")),
)
