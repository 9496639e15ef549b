"""Decision-memory grants over `/v1`: list them, revoke one.

A grant is made by approving with `remember` (`POST /v1/actions/{id}/decision`); revoking
only ever tightens, so any reviewer may do it, and it is audited.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request as HttpRequest
from starlette.responses import Response

from interlock.server.api import Endpoint, Param, caller, ctx, ok, path_id, run
from interlock.server.models import GrantOut, GrantsOut


async def list_grants(request: HttpRequest) -> Response:
    await caller(request, "reviewer")
    store = ctx(request).gateway.store
    agent = request.query_params.get("agent") or None
    live = request.query_params.get("all", "false").lower() not in ("true", "1", "yes")

    def work() -> dict[str, Any]:
        now = store.clock.now()
        return {"grants": [g.to_json(now) for g in store.grants(agent=agent, live=live)]}

    return ok(await run(work))


async def revoke_grant(request: HttpRequest) -> Response:
    who = await caller(request, "reviewer")
    gid = path_id(request)
    store = ctx(request).gateway.store
    grant = await run(store.revoke_grant, gid, actor=f"{who.role}:{who.name}")
    return ok(grant.to_json(store.clock.now()))


_T = ("grants",)
_R = ("reviewer",)

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(method="GET", path="/v1/grants", handler=list_grants,
             summary="Decision-memory grants, newest first", roles=_R, response=GrantsOut,
             tags=_T,
             query=(Param(name="agent", description="only this agent's",
                          schema={"type": "string"}),
                    Param(name="all", description="true: also revoked and expired ones",
                          schema={"type": "string", "enum": ["true", "false"]}))),
    Endpoint(method="DELETE", path="/v1/grants/{id}", handler=revoke_grant,
             summary="Revoke a grant", roles=_R, response=GrantOut, errors=(404,), tags=_T),
    Endpoint(method="POST", path="/v1/grants/{id}/revoke", handler=revoke_grant,
             summary="Revoke a grant (for clients without DELETE)", roles=_R,
             response=GrantOut, errors=(404,), tags=_T),
)
