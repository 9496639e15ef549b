"""`GET /v1/insights?window=7d&by=rule|action|agent`: figures and gate-tuning advice.

Reviewers and admins only, by Bearer token like the rest of `/v1`; the history is read off
the event loop.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from interlock.errors import BadInput
from interlock.gateway import Gateway
from interlock.insights.advice import payload
from interlock.insights.figures import GROUPINGS, GroupBy, parse_window, report
from interlock.server import auth
from interlock.server.settings import ServerSettings

DEFAULT_WINDOW = "7d"


def routes(gateway: Gateway, settings: ServerSettings) -> list[BaseRoute]:
    """The insights route, sharing the gateway's store and policy."""
    cache = auth.TokenCache()

    async def insights(request: HttpRequest) -> Response:
        who = await run_in_threadpool(auth.principal, gateway, cache, auth.bearer(request))
        auth.require(who, "reviewer")
        window = parse_window(request.query_params.get("window", DEFAULT_WINDOW))
        by = request.query_params.get("by", "rule")
        if by not in GROUPINGS:
            raise BadInput(f"`by` is one of {', '.join(GROUPINGS)}, not `{by}`")
        group: GroupBy = by

        def compute() -> dict[str, object]:
            return payload(report(gateway.store, window=window, by=group), gateway.policy.file)

        return JSONResponse(await run_in_threadpool(compute))

    return [Route("/v1/insights", insights, methods=["GET"])]
