"""The server's app factory: `/v1` routes, then the reviewer UI's, behind one guard middleware.

The guard gives each request an id, a structured log line (never a token, never a query
string), security headers and the body limit; the lifespan runs the sweeper and the waiters.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import re
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from interlock import __version__, notify
from interlock.errors import BadInput, InterlockError, TooLarge, TooMany
from interlock.gateway import Gateway
from interlock.server import (
    api_admin,
    api_agents,
    api_autonomy,
    api_grants,
    api_reviewers,
    auth,
    authzen,
    openapi,
    ui,
)
from interlock.server.api import Context, Endpoint, validation_message
from interlock.server.metrics import Metrics
from interlock.server.settings import ServerSettings
from interlock.server.ticker import Ticker
from interlock.server.waiters import Hub, NotifyingGateway

log = logging.getLogger("interlock.server")
access = logging.getLogger("interlock.access")

ENDPOINTS: tuple[Endpoint, ...] = (
    *api_agents.ENDPOINTS, *api_reviewers.ENDPOINTS, *api_admin.ENDPOINTS,
    *api_autonomy.ENDPOINTS, *api_grants.ENDPOINTS,
)

#: What every response carries unless a route set its own (the UI may add a nonce).
SECURITY_HEADERS: dict[str, str] = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; "
        "frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}
_SECURITY_RAW = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def _error(status: int, code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


class Guard:
    """Request ids, access logs, security headers, and the body size limit, as raw ASGI."""

    def __init__(self, app: ASGIApp, *, max_body: int, metrics: Metrics) -> None:
        self.app = app
        self.max_body = max_body
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope["headers"])
        rid_in = headers.get(b"x-request-id", b"").decode("latin-1")
        rid = rid_in if _REQUEST_ID.match(rid_in) else os.urandom(16).hex()
        scope.setdefault("state", {})["request_id"] = rid
        status = 500

        async def send_wrapped(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                raw = list(message.get("headers", []))
                present = {k.lower() for k, _ in raw}
                raw += [kv for kv in _SECURITY_RAW if kv[0] not in present]
                raw.append((b"x-request-id", rid.encode()))
                message = {**message, "headers": raw}
            await send(message)

        length = headers.get(b"content-length")
        try:
            too_big = length is not None and int(length) > self.max_body
        except ValueError:
            too_big = False
        try:
            if too_big:
                await self._refuse(send_wrapped)
            else:
                await self.app(scope, self._limited(receive), send_wrapped)
        except ClientDisconnect:  # gone before its body arrived: nobody to answer
            status = 499
            log.info("request %s: the client disconnected before sending its body", rid)
        finally:
            self.metrics.observe_http(scope["method"], status)
            if access.isEnabledFor(logging.INFO):
                access.info(json.dumps({
                    "request_id": rid, "method": scope["method"], "path": scope["path"],
                    "status": status, "ms": round((time.perf_counter() - started) * 1000, 2),
                }))

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(TooLarge(f"the body is over {self.max_body} bytes").to_json())
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body.encode()})

    def _limited(self, receive: Receive) -> Receive:
        seen = 0
        limit = self.max_body

        async def wrapped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise TooLarge(f"the body is over {limit} bytes")
            return message

        return wrapped


async def _interlock_error(request: HttpRequest, exc: Exception) -> Response:
    assert isinstance(exc, InterlockError)
    headers = {"www-authenticate": "Bearer"} if exc.status == 401 else None
    if exc.status >= 500:  # the server's trouble, not the client's: the operator hears of it
        rid = request.scope.get("state", {}).get("request_id", "")
        log.warning("request %s: %s", rid, exc.message, exc_info=exc.__cause__)
        headers = {"retry-after": "1"}
    elif isinstance(exc, TooMany) and exc.retry_after is not None:
        headers = {"retry-after": str(max(1, math.ceil(exc.retry_after)))}
    return JSONResponse(exc.to_json(), status_code=exc.status, headers=headers)


async def _validation_error(request: HttpRequest, exc: Exception) -> Response:
    assert isinstance(exc, ValidationError)
    return JSONResponse(BadInput(validation_message(exc)).to_json(), status_code=422)


async def _http_error(request: HttpRequest, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    message = {404: f"no route `{request.url.path}`",
               405: f"`{request.method}` is not allowed on `{request.url.path}`"}.get(
        exc.status_code, str(exc.detail))
    return JSONResponse(_error(exc.status_code, code, message), status_code=exc.status_code,
                        headers=exc.headers)


async def _server_error(request: HttpRequest, exc: Exception) -> Response:
    rid = request.scope.get("state", {}).get("request_id", "")
    log.error("request %s failed: %s", rid, type(exc).__name__, exc_info=exc)
    return JSONResponse(_error(500, "internal", f"internal error (request id {rid})"),
                        status_code=500)


class Sweeper(Ticker):
    """Runs the store's sweeper every `interval` seconds in one thread, then wakes waiters."""

    thread_name = "interlock-sweeper"
    work = "sweep"

    def __init__(self, gateway: Gateway, hub: Hub, metrics: Metrics, interval: float) -> None:
        super().__init__(interval)
        self.gateway = gateway
        self.hub = hub
        self.metrics = metrics

    def once(self) -> list[str]:
        """One sweep; returns the ids it changed (tests call it directly)."""
        report = self.gateway.store.sweep()
        ids = [*report.expired, *report.escalated, *report.approved, *report.unknown]
        if ids:
            self.hub.changed(ids)
            for rid in ids:
                with contextlib.suppress(InterlockError):
                    self.metrics.observe_change(self.gateway.store.get(rid))
        return ids


def create_app(
    gateway: Gateway, settings: ServerSettings | None = None, *, background: bool = True
) -> Starlette:
    """The ASGI app. `background=False` leaves the sweeper and listener to the caller
    (tests drive `app.state.sweeper.once()` with a fake clock)."""
    settings = settings or ServerSettings()
    metrics = Metrics()
    hub = Hub(gateway.store)
    notifying = NotifyingGateway.wrap(gateway, hub, metrics.observe_change)
    context = Context(gateway=notifying, settings=settings, hub=hub, metrics=metrics,
                      tokens=auth.TokenCache())
    sweeper = Sweeper(notifying, hub, metrics, settings.sweep_interval)
    doc = openapi.document(ENDPOINTS, version=__version__)

    async def openapi_json(request: HttpRequest) -> Response:
        return JSONResponse(doc)

    routes: list[BaseRoute] = [
        Route(ep.path, ep.handler, methods=[ep.method]) for ep in ENDPOINTS
    ]
    routes.append(Route("/openapi.json", openapi_json, methods=["GET"]))
    routes += notify.routes(notifying, settings)
    routes += list(ui.routes(notifying, settings))
    routes += authzen.routes(notifying, settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        hub.loop = asyncio.get_running_loop()
        if background:
            hub.start(hub.loop)
            sweeper.start()
        notifier = notify.start(notifying, settings, background=background)
        try:
            yield
        finally:
            notifier.stop()
            sweeper.stop()
            hub.stop()

    app = Starlette(
        routes=routes,
        exception_handlers={
            InterlockError: _interlock_error,
            ValidationError: _validation_error,
            HTTPException: _http_error,
            Exception: _server_error,
        },
        lifespan=lifespan,
    )
    app.state.ctx = context
    app.state.sweeper = sweeper
    app.state.hub = hub
    app.state.gateway = notifying
    app.add_middleware(Guard, max_body=settings.max_body, metrics=metrics)
    return app


def endpoints() -> Iterable[Endpoint]:
    """The API's route table (for docs and tests)."""
    return ENDPOINTS
