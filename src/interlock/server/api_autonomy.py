"""Agents' autonomy levels over `/v1`: reviewers read them; an admin asks to set or pin one.

A level change is itself a request of the built-in `interlock` agent that a second admin
approves (SPEC §8); approving it applies it once.
"""

from __future__ import annotations

from starlette.requests import Request as HttpRequest
from starlette.responses import Response

from interlock.autonomy import agent_levels
from interlock.server.api import Endpoint, body_json, caller, ctx, ok, path_id, run
from interlock.server.models import AgentsOut, AutonomyIn, RequestOut


async def agents(request: HttpRequest) -> Response:
    await caller(request, "reviewer")
    gateway = ctx(request).gateway
    found = await run(agent_levels, gateway.store, gateway.policy)
    return ok({"agents": [a.to_json() for a in found]})


async def set_autonomy(request: HttpRequest) -> Response:
    who = await caller(request, "admin")
    name = path_id(request, "name")
    body, _ = await body_json(request, AutonomyIn)
    c = ctx(request)
    r = await run(c.gateway.propose_autonomy, who, name, body.level, pinned=body.pinned,
                  reason=body.reason)
    return ok(c.request_json(r))


_T = ("autonomy",)

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(method="GET", path="/v1/agents", handler=agents,
             summary="Every agent's autonomy level, pin and track record", roles=("reviewer",),
             response=AgentsOut, tags=_T),
    Endpoint(method="POST", path="/v1/agents/{name}/autonomy", handler=set_autonomy,
             summary="Ask to set or pin an agent's level: a pending request a second admin "
             "approves", roles=("admin",), body=AutonomyIn, response=RequestOut, tags=_T),
)
