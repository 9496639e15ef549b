"""OpenID AuthZEN Authorization API 1.0: `/access/v1/evaluation(s)` over interlock's gateway.

A policy enforcement point asks "may SUBJECT do ACTION on RESOURCE?"; interlock submits the
action (so it is audited, and a reviewer sees what needs approval) and answers `decision:
true` only for allow/notify. Bearer tokens work as on `/v1`: the subject is the agent token.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request as HttpRequest
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from interlock.errors import BadInput, Conflict, Forbidden, Gone, NotFound
from interlock.gateway import Gateway, Principal
from interlock.server.api import body_json, caller, ok, run
from interlock.server.settings import ServerSettings
from interlock.store import Request

#: Action fields an AuthZEN `context` may set directly (SPEC §1); the rest stays context.
ACTION_FIELDS = (
    "environment", "capabilities", "reason", "confidence", "alternatives", "preview",
    "affected_records", "amount", "currency", "recipients", "risk", "idempotency_key",
    "batch_id", "revision_of",
)
#: The context key that resumes an earlier request instead of submitting a new one.
RESUME_KEY = "interlock_request_id"
RUNNABLE = frozenset({"allowed", "notified", "approved"})
#: Most evaluations one batch may carry.
MAX_EVALUATIONS = 100


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Subject(_Open):
    """Who asks: its `id` must be the agent the token names."""

    type: str
    id: str
    properties: dict[str, Any] | None = None


class Resource(_Open):
    """What the action is on; its properties become the action's args."""

    type: str
    id: str
    properties: dict[str, Any] | None = None


class Action(_Open):
    """The operation: `name` is the interlock action."""

    name: str
    properties: dict[str, Any] | None = None


class EvaluationIn(_Open):
    """`POST /access/v1/evaluation` (AuthZEN §6.1)."""

    subject: Subject | None = None
    action: Action
    resource: Resource
    context: dict[str, Any] | None = None


class Item(_Open):
    """One entry of `evaluations`: any part it omits comes from the request's defaults."""

    subject: Subject | None = None
    action: Action | None = None
    resource: Resource | None = None
    context: dict[str, Any] | None = None


class Options(_Open):
    evaluations_semantic: Literal[
        "execute_all", "deny_on_first_deny", "permit_on_first_permit"] = "execute_all"


class EvaluationsIn(_Open):
    """`POST /access/v1/evaluations` (AuthZEN §7.1)."""

    subject: Subject | None = None
    action: Action | None = None
    resource: Resource | None = None
    context: dict[str, Any] | None = None
    evaluations: list[Item] | None = Field(default=None, max_length=MAX_EVALUATIONS)
    options: Options | None = None


def action_of(item: EvaluationIn, who: Principal) -> dict[str, Any]:
    """The interlock action an evaluation stands for (403 if it names another subject)."""
    if item.subject is not None and item.subject.id != who.name:
        raise Forbidden(
            f"the subject is `{item.subject.id}` but the token is agent `{who.name}`: an agent "
            "evaluates only as itself", code="subject_mismatch")
    args = dict(item.resource.properties or {})
    args.setdefault("resource", {"type": item.resource.type, "id": item.resource.id})
    context = dict(item.context or {})
    context.pop(RESUME_KEY, None)
    action: dict[str, Any] = {"action": item.action.name, "args": args}
    for key in ACTION_FIELDS:
        if key in context:
            action[key] = context.pop(key)
    extra = {k: v for k, v in context.items() if k != "authzen"}
    if item.action.properties:
        extra["action_properties"] = item.action.properties
    if item.subject is not None and item.subject.properties:
        extra["subject_properties"] = item.subject.properties
    if extra:
        action["context"] = extra
    # Each evaluation is its own request unless the caller names a key to dedupe on.
    action.setdefault("idempotency_key", f"authzen-{uuid.uuid4().hex}")
    return action


def _answer(gateway: Gateway, link: str, request: Request, *, permitted: bool,
            args: dict[str, Any] | None = None, problem: str | None = None) -> dict[str, Any]:
    result = request.result
    context: dict[str, Any] = {
        "decision": request.decision.value, "state": request.state.value,
        "reasons": list(result.reasons), "rules": list(result.rules),
        "risk": request.risk.value, "request_id": request.id,
    }
    if request.state.value == "pending" or request.decision.value == "require_approval":
        context["link"] = link
    if request.reason:
        context["reason"] = request.reason
    if args is not None:
        context["args"] = args
    if problem:
        context["problem"] = problem
    if not permitted:
        why = request.reason or "; ".join(result.reasons) or request.state.value
        context["reason_user"] = {"en": _why_not(request.state.value, why, request.id)}
    return {"decision": permitted, "context": context}


def _why_not(state: str, why: str, rid: str) -> str:
    if state == "pending":
        return (f"waiting for a reviewer (request {rid}): {why}; evaluate again with "
                f"context.{RESUME_KEY} = `{rid}` once decided")
    return f"interlock: {state.replace('_', ' ')}: {why}"


def evaluate_one(gateway: Gateway, who: Principal, item: EvaluationIn,
                 link: Callable[[Request], str]) -> dict[str, Any]:
    """Submit (or resume) one evaluation; permit only what may run now, claimed once.

    A permitted request is claimed for the caller and its outcome recorded as handed over:
    the caller carries the action out, and interlock does not see how it went."""
    resume = (item.context or {}).get(RESUME_KEY)
    if resume is not None:
        request = gateway.get(str(resume), who)
        if request.action_name != item.action.name:
            raise BadInput(f"request `{resume}` is for `{request.action_name}`, not "
                           f"`{item.action.name}`")
        if item.subject is not None and item.subject.id != who.name:
            raise Forbidden(f"the subject is `{item.subject.id}` but the token is agent "
                            f"`{who.name}`", code="subject_mismatch")
    else:
        request = gateway.submit(action_of(item, who), who).request
    if request.state.value not in RUNNABLE:
        return _answer(gateway, link(request), request, permitted=False)
    try:
        claim = gateway.claim(request.id, who)
    except (Conflict, Gone) as exc:
        fresh = gateway.get(request.id, who)
        return _answer(gateway, link(fresh), fresh, permitted=False, problem=exc.message)
    done = gateway.outcome(request.id, who, "succeeded",
                           "permitted through AuthZEN; the caller carries it out")
    return _answer(gateway, link(done), done, permitted=True, args=claim.args)


def _merge(batch: EvaluationsIn, item: Item) -> EvaluationIn:
    action = item.action or batch.action
    resource = item.resource or batch.resource
    if action is None or resource is None:
        raise BadInput("each evaluation needs an `action` and a `resource`, its own or the "
                       "request's default")
    context = {**(batch.context or {}), **(item.context or {})}
    return EvaluationIn(subject=item.subject or batch.subject, action=action,
                        resource=resource, context=context or None)


def routes(gateway: Gateway, settings: ServerSettings) -> list[BaseRoute]:
    """The two AuthZEN routes, authenticated like `/v1` (agent tokens)."""
    base = settings.public_url.rstrip("/")

    def link(request: Request) -> str:
        return f"{base}/requests/{request.id}"

    async def evaluation(request: HttpRequest) -> Response:
        who = await caller(request, "agent")
        item, _ = await body_json(request, EvaluationIn)
        return ok(await run(evaluate_one, gateway, who, item, link))

    async def evaluations(request: HttpRequest) -> Response:
        who = await caller(request, "agent")
        batch, _ = await body_json(request, EvaluationsIn)
        if not batch.evaluations:  # AuthZEN §7.1: no list behaves as one evaluation
            single = _merge(batch, Item())
            return ok(await run(evaluate_one, gateway, who, single, link))
        items = [_merge(batch, item) for item in batch.evaluations]
        for one in items:  # refuse the whole batch before anything is written
            if one.subject is not None and one.subject.id != who.name:
                raise Forbidden(f"the subject is `{one.subject.id}` but the token is agent "
                                f"`{who.name}`", code="subject_mismatch")
        semantic = batch.options.evaluations_semantic if batch.options else "execute_all"
        out: list[dict[str, Any]] = []
        for one in items:
            try:
                answer = await run(evaluate_one, gateway, who, one, link)
            except (BadInput, NotFound, Forbidden) as exc:
                answer = {"decision": False, "context": {"error": exc.to_json()["error"]}}
            out.append(answer)
            if (semantic == "deny_on_first_deny" and not answer["decision"]) or (
                    semantic == "permit_on_first_permit" and answer["decision"]):
                break
        return ok({"evaluations": out})

    return [
        Route("/access/v1/evaluation", evaluation, methods=["POST"]),
        Route("/access/v1/evaluations", evaluations, methods=["POST"]),
    ]
