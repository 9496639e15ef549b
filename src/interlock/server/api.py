"""What every `/v1` route shares: the route table's entry type, body parsing, auth, threads.

Handlers are coroutines; anything that touches the store runs in the thread pool, and the
route table here is also what `/openapi.json` is generated from.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response

from interlock import jsonvalue
from interlock.errors import BadInput
from interlock.gateway import Gateway, Principal, Role
from interlock.jsonvalue import MalformedJson
from interlock.server import auth
from interlock.server.metrics import Metrics
from interlock.server.models import request_fields
from interlock.server.settings import ServerSettings
from interlock.server.waiters import Hub, NotifyingGateway
from interlock.store import Request

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
Handler = Callable[[HttpRequest], Awaitable[Response]]

#: The built-in agent identity that proposes interlock's own gated changes (gates on the gate).
INTERLOCK_AGENT = "interlock"


@dataclass(frozen=True, kw_only=True)
class Param:
    """A query parameter, for validation messages and the OpenAPI document."""

    name: str
    schema: dict[str, Any]
    description: str
    required: bool = False


@dataclass(frozen=True, kw_only=True)
class Endpoint:
    """One route of the API, with what the OpenAPI document says about it."""

    method: str
    path: str
    handler: Handler
    summary: str
    roles: tuple[str, ...]
    """Token roles allowed; empty: no token needed."""
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    content_type: str = "application/json"
    query: tuple[Param, ...] = ()
    errors: tuple[int, ...] = ()
    """Statuses a client can cause besides the ones every authenticated route has."""
    tags: tuple[str, ...] = field(default_factory=tuple)


@dataclass(kw_only=True)
class Context:
    """The server's parts, reachable from every handler as `request.app.state.ctx`."""

    gateway: NotifyingGateway
    settings: ServerSettings
    hub: Hub
    metrics: Metrics
    tokens: auth.TokenCache

    def link(self, request: Request) -> str:
        base = self.settings.public_url.rstrip("/")
        return f"{base}/requests/{request.id}" if base else f"/requests/{request.id}"

    def phrase(self, request: Request) -> str | None:
        reqs = request.requirements
        if reqs is None or not reqs.confirm:
            return None
        return Gateway.confirmation_phrase(request)

    def request_json(self, request: Request) -> dict[str, Any]:
        return request_fields(request, link=self.link(request), phrase=self.phrase(request))


def ctx(request: HttpRequest) -> Context:
    c: Context = request.app.state.ctx
    return c


#: Threads for blocking store work: as many as anyio's default, without its per-call costs.
POOL = ThreadPoolExecutor(max_workers=40, thread_name_prefix="interlock-store")


async def run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run blocking store work in the thread pool."""
    return await asyncio.get_running_loop().run_in_executor(POOL, partial(fn, *args, **kwargs))


async def grouped(c: Context, fn: Callable[..., T], *args: Any) -> T:
    """Run a gateway call on the event loop, its writes sharing the loop's group commit where
    the store has a single writer (`Store.run_grouped`), else in the thread pool. For calls
    that read nothing back after writing: the group is not committed until they return."""
    return await c.gateway.store.run_grouped(partial(fn, *args), POOL)


async def caller(request: HttpRequest, *roles: Role) -> Principal:
    """The authenticated caller, checked against `roles` (401/403 otherwise)."""
    c = ctx(request)
    secret = auth.bearer(request)
    who = c.tokens.get(secret) if secret else None
    if who is None:
        who = await run(auth.principal, c.gateway, c.tokens, secret)
    return auth.require(who, *roles)


def validation_message(exc: ValidationError) -> str:
    """`field.path`: what is wrong, for the first few errors."""
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"`{loc}`: {err['msg'].lower()}")
    return "; ".join(parts)


async def body_json(request: HttpRequest, model: type[M]) -> tuple[M, dict[str, Any]]:
    """The body parsed strictly (`jsonvalue.loads`: no NaN, no lone surrogates, no nesting
    past the limit), an object, validated by `model` (and the raw object)."""
    raw = await request.body()
    if not raw.strip():
        raise MalformedJson("a JSON body is required")
    try:
        data = jsonvalue.loads(raw, max_depth=ctx(request).settings.max_depth)
    except MalformedJson as exc:
        raise MalformedJson(f"the body is {exc.message}") from None
    if not isinstance(data, dict):
        raise BadInput("the body must be a JSON object")
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        raise BadInput(validation_message(exc)) from None
    return parsed, data


def query_float(request: HttpRequest, name: str, default: float, lo: float, hi: float) -> float:
    """A numeric query parameter, clamped to [lo, hi]; 422 when it is not a number."""
    text = request.query_params.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise BadInput(f"`{name}` must be a number of seconds, not `{text}`") from None
    if value != value:  # NaN
        raise BadInput(f"`{name}` must be a number")
    return min(max(value, lo), hi)


def query_int(request: HttpRequest, name: str, default: int, lo: int, hi: int) -> int:
    """An integer query parameter in [lo, hi]; 422 otherwise."""
    text = request.query_params.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadInput(f"`{name}` must be an integer, not `{text}`") from None
    if not lo <= value <= hi:
        raise BadInput(f"`{name}` must be between {lo} and {hi}")
    return value


def path_id(request: HttpRequest, name: str = "id") -> str:
    value = str(request.path_params[name])
    if not value or len(value) > 200:
        raise BadInput(f"`{name}` must be 1 to 200 characters")
    return value


def ok(body: Mapping[str, Any] | BaseModel, status: int = 200) -> JSONResponse:
    if isinstance(body, BaseModel):
        body = body.model_dump(mode="json")
    return JSONResponse(body, status_code=status)
