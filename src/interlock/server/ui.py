"""The reviewer web UI: sign-in, the queue, the request page, batches and the audit trail.

Server-rendered with Jinja2 (autoescape on) and enhanced by vendored htmx; every form is a
plain POST that works without JavaScript. Every change goes through `Gateway`.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from interlock import grants
from interlock.autonomy import agent_levels
from interlock.errors import Conflict, InterlockError, NotFound
from interlock.gateway import Gateway, Principal, authenticate
from interlock.server import ui_insights
from interlock.server import ui_views as views
from interlock.server.auth import asked_for, check_may_act_on
from interlock.server.settings import ServerSettings
from interlock.server.ui_session import Session, Sessions, form_list, read_form
from interlock.store import Request as Stored
from interlock.store import State, quorum

HERE = Path(__file__).parent
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
#: States in which a request of a paused agent may still run: its reviewers should know.
LIVE = frozenset({State.PENDING, State.APPROVED, State.ALLOWED, State.NOTIFIED})

DONE = {
    "approve": "Your approval was recorded.",
    "deny": "You denied this request; the agent receives your reason.",
    "request_changes": "You sent this request back for changes.",
    "delegate": "Reviewers were added to the current stage.",
    "resolve": "Recorded.",
    "withdraw": "Withdrawn.",
}
#: How many pending requests the queue reads at once.
QUEUE_LIMIT = 500

Handler = Callable[[Request], Awaitable[Response]]


def routes(gateway: Gateway, settings: ServerSettings) -> list[BaseRoute]:
    """The UI's routes; mounted after the API's, so `/v1` always wins."""
    ui = UI(gateway, settings)
    return [
        Route("/", ui.queue, methods=["GET"], name="ui-queue"),
        Route("/fragments/queue", ui.queue_fragment, methods=["GET"]),
        Route("/login", ui.login_page, methods=["GET"], name="ui-login"),
        Route("/login", ui.login, methods=["POST"]),
        Route("/logout", ui.logout, methods=["POST"]),
        Route("/requests/{rid}", ui.request_page, methods=["GET"]),
        Route("/requests/{rid}/status", ui.request_status, methods=["GET"]),
        Route("/requests/{rid}/decide", ui.decide, methods=["POST"]),
        Route("/requests/{rid}/delegate", ui.delegate, methods=["POST"]),
        Route("/requests/{rid}/resolve", ui.resolve, methods=["POST"]),
        Route("/requests/{rid}/withdraw", ui.withdraw, methods=["POST"]),
        Route("/requests/{rid}/check-args", ui.check_args, methods=["POST"]),
        Route("/batches/{batch_id}", ui.batch_page, methods=["GET"]),
        Route("/batches/{batch_id}/decide", ui.batch_decide, methods=["POST"]),
        Route("/audit", ui.audit, methods=["GET"]),
        Route("/agents", ui.agents, methods=["GET"]),
        *ui_insights.routes(ui),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="ui-static"),
    ]


def _safe_next(target: str | None) -> str:
    """Only local paths: never redirect a reviewer off-site after sign-in."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


class UI:
    """The handlers, sharing the gateway, the session signer and the template environment."""

    def __init__(self, gateway: Gateway, settings: ServerSettings) -> None:
        self.gw = gateway
        self.settings = settings
        self.sessions = Sessions(settings, gateway.store)
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"), autoescape=True,
            undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        )
        self.env.filters.update(
            ago=views.ago, iso=views.iso, when=views.short_time, json=views.pretty_json,
            visible=views.visible,
        )
        self.env.globals.update(summary=views.summary)

    # -- plumbing -----------------------------------------------------------------------

    def now(self) -> float:
        return self.gw.store.clock.now()

    def render(
        self, name: str, session: Session | None, who: Principal | None,
        status: int = 200, **ctx: Any,
    ) -> HTMLResponse:
        html = self.env.get_template(name).render(
            who=who, csrf=self.sessions.csrf_token(session) if session else "",
            now=self.now(), **ctx,
        )
        return HTMLResponse(html, status_code=status, headers=HEADERS)

    def redirect(self, url: str) -> RedirectResponse:
        return RedirectResponse(url, status_code=303, headers=HEADERS)

    def signed_in(self, request: Request) -> tuple[Session, Principal] | Response:
        """The session and reviewer, or a redirect to sign-in (a 401 fragment for htmx)."""
        session = self.sessions.read(request)
        who = self.sessions.principal(session)
        if session is None or who is None:
            if request.headers.get("hx-request"):
                return HTMLResponse(
                    '<p class="notice">Your session ended. <a href="/login">Sign in</a>.</p>',
                    status_code=401, headers=HEADERS)
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return self.redirect("/login?" + urlencode({"next": target}))
        return session, who

    async def posted(
        self, request: Request
    ) -> tuple[Session, Principal, dict[str, str]] | Response:
        """A signed-in POST with a valid CSRF token, and its form; or the page refusing it."""
        auth = self.signed_in(request)
        if isinstance(auth, Response):
            return auth
        session, who = auth
        try:
            form = await read_form(request, self.settings.max_body)
        except InterlockError as exc:
            return self.error(session, who, exc.status, "This form could not be read",
                              exc.message)
        if not self.sessions.csrf_ok(session, form.get("csrf")):
            return self.error(
                session, who, 403, "This form has expired",
                "The form did not carry a valid security token (it may be from an old page "
                "or from another site). Reload the page and try again.",
            )
        return session, who, form

    async def posted_on(
        self, request: Request
    ) -> tuple[Session, Principal, dict[str, str], Stored] | Response:
        """`posted`, for a form about the request in the path: also the request, or a 404
        page when there is none this person may see."""
        got = await self.posted(request)
        if isinstance(got, Response):
            return got
        session, who, form = got
        req = self.load(request.path_params["rid"], who)
        if req is None:
            return self.error(session, who, 404, "No such request",
                              "There is no request with that id.")
        return session, who, form, req

    def error(
        self, session: Session | None, who: Principal | None, status: int, title: str,
        message: str,
    ) -> HTMLResponse:
        return self.render("error.html", session, who, status=status, title=title,
                           message=message)

    def load(self, rid: str, who: Principal) -> Stored | None:
        try:
            return self.gw.get(rid, who)
        except NotFound:
            return None

    # -- sign-in ------------------------------------------------------------------------

    async def login_page(self, request: Request) -> Response:
        token = request.query_params.get("token")
        nxt = _safe_next(request.query_params.get("next"))
        if token is not None:
            # The one-time link: sign in, then drop the secret from the address bar.
            who = authenticate(self.gw.store, token)
            if who is None or who.role == "agent" or who.token_id is None:
                return self.redirect("/login?error=link")
            response = self.redirect(nxt)
            response.headers["Referrer-Policy"] = "no-referrer"
            self.sessions.set_cookie(response, self.sessions.new(who.token_id))
            return response
        session = self.sessions.read(request)
        if session is not None and self.sessions.principal(session) is not None:
            return self.redirect(nxt)
        if session is None or session.token_id is not None:
            session = self.sessions.new(None)
        error = {"link": "That sign-in link is not valid (expired, revoked or mistyped)."}.get(
            request.query_params.get("error", ""))
        page = self.render("login.html", session, None, next=nxt, error=error)
        self.sessions.set_cookie(page, session)
        return page

    async def login(self, request: Request) -> Response:
        session = self.sessions.read(request)
        try:
            form = await read_form(request, self.settings.max_body)
        except InterlockError as exc:
            return self.error(session, None, exc.status, "This form could not be read",
                              exc.message)
        nxt = _safe_next(form.get("next"))
        if not self.sessions.csrf_ok(session, form.get("csrf")):
            fresh = self.sessions.new(None)
            page = self.render(
                "login.html", fresh, None, status=403, next=nxt,
                error="The sign-in form expired. Please try again.")
            self.sessions.set_cookie(page, fresh)
            return page
        assert session is not None
        who = authenticate(self.gw.store, form.get("token", "").strip())
        if who is None or who.role == "agent" or who.token_id is None:
            message = ("Agent tokens cannot sign in here; use a reviewer or admin token."
                       if who is not None else "That token is not valid (expired, revoked or "
                       "mistyped).")
            return self.render("login.html", session, None, status=401, next=nxt,
                               error=message)
        response = self.redirect(nxt)
        self.sessions.set_cookie(response, self.sessions.new(who.token_id))
        return response

    async def logout(self, request: Request) -> Response:
        session = self.sessions.read(request)
        try:
            form = await read_form(request, self.settings.max_body)
        except InterlockError:
            form = {}
        if not self.sessions.csrf_ok(session, form.get("csrf")):
            return self.error(session, self.sessions.principal(session), 403,
                              "This form has expired", "Reload the page and sign out again.")
        response = self.redirect("/login")
        self.sessions.clear_cookie(response)
        return response

    # -- the queue ----------------------------------------------------------------------

    def queue_items(self, who: Principal) -> tuple[list[Stored], int]:
        """Pending requests this reviewer may decide, oldest first; and how many others wait."""
        pending = self.gw.store.list_requests(state=State.PENDING, limit=QUEUE_LIMIT)
        mine = [r for r in pending if views.may_decide(r, who)]
        return mine, len(pending) - len(mine)

    async def queue(self, request: Request) -> Response:
        auth = self.signed_in(request)
        if isinstance(auth, Response):
            return auth
        session, who = auth
        items, others = self.queue_items(who)
        return self.render("queue.html", session, who, items=items, others=others,
                           pauses=self.gw.store.pauses())

    async def queue_fragment(self, request: Request) -> Response:
        auth = self.signed_in(request)
        if isinstance(auth, Response):
            return auth
        session, who = auth
        items, others = self.queue_items(who)
        return self.render("_queue_items.html", session, who, items=items, others=others)

    # -- one request --------------------------------------------------------------------

    def request_view(
        self, req: Stored, session: Session, who: Principal, *, status: int = 200,
        error: str | None = None, error_form: str | None = None,
        form: dict[str, str] | None = None, done: str | None = None,
        args_error: str | None = None,
    ) -> HTMLResponse:
        decidable = views.may_decide(req, who)
        reqs = req.requirements
        proposed = req.action.get("args") if isinstance(req.action.get("args"), dict) else {}
        return self.render(
            "request.html", session, who, status=status, r=req, decidable=decidable,
            gates=views.gates(req), preview=views.preview(req.action),
            plan_step=views.plan_step(req.action), confidence=views.confidence(req.action),
            alternatives=views.alternatives(req.action),
            reason=views.visible(req.action["reason"]) if req.action.get("reason") else None,
            history=views.history(self.gw.store, req), votes=self.gw.votes(req.id),
            timeline=self.gw.store.timeline(req.id),
            phrase=self.gw.confirmation_phrase(req) if reqs and reqs.confirm else None,
            proposed=proposed, edited=views.edited_keys(proposed or {}, req.final_args),
            args_text=views.pretty_json(req.final_args),
            error=error, error_form=error_form, form=defaultdict(str, form or {}),
            done=DONE.get(done or ""),
            args_error=args_error,
            agent_level=next(iter(agent_levels(self.gw.store, self.gw.policy, req.agent)),
                             None),
            remember_ok=decidable and grants.alone_could_approve(reqs, who.reviewer),
            delegable=sorted(quorum.delegable(reqs)) if reqs else [],
            paused=self.gw.store.paused(req.agent) if req.state in LIVE else None,
        )

    async def request_page(self, request: Request) -> Response:
        auth = self.signed_in(request)
        if isinstance(auth, Response):
            return auth
        session, who = auth
        req = self.load(request.path_params["rid"], who)
        if req is None:
            return self.error(session, who, 404, "No such request",
                              "There is no request with that id.")
        return self.request_view(req, session, who, done=request.query_params.get("done"))

    async def request_status(self, request: Request) -> Response:
        """Polled by the request page: says so when the request changed under the reviewer."""
        auth = self.signed_in(request)
        if isinstance(auth, Response):
            return auth
        session, who = auth
        req = self.load(request.path_params["rid"], who)
        if req is None:
            return HTMLResponse("", headers=HEADERS)
        seen = request.query_params.get("v", "")
        return self.render("_status.html", session, who, r=req,
                           changed=seen.isdigit() and int(seen) != req.version)

    async def decide(self, request: Request) -> Response:
        got = await self.posted_on(request)
        if isinstance(got, Response):
            return got
        session, who, form, req = got
        verdict = form.get("verdict", "")
        note = {"approve": form.get("note"), "deny": form.get("reason"),
                "request_changes": form.get("changes_note")}.get(verdict)
        note = (note or "").strip() or None

        def again(message: str, status: int = 422, args_error: str | None = None) -> Response:
            return self.request_view(req, session, who, status=status, error=message,
                                     error_form=verdict, form=form, args_error=args_error)

        if verdict not in ("approve", "deny", "request_changes"):
            return again("Choose approve, deny or request changes.")
        if verdict == "deny" and note is None:
            return again("A denial needs a reason: the agent reads it to decide what to do next.")
        if verdict == "request_changes" and note is None:
            return again("Say what should change: the agent reads this note to revise.")
        args: Any = None
        if verdict == "approve" and form.get("args", "").strip():
            parsed, problem = parse_args(form["args"])
            if problem is not None:
                return again(problem, args_error=problem)
            if parsed != req.final_args:
                args = parsed
        remember: dict[str, Any] | None = None
        if verdict == "approve" and form.get("remember"):
            remember = {"scope": form.get("remember_scope") or "agent_action"}
            if form.get("remember_until", "").strip():
                remember["until"] = form["remember_until"].strip()
            if form.get("remember_args", "").strip():
                pattern, problem = parse_args(form["remember_args"])
                if problem is not None:
                    return again(f"The argument pattern: {problem}")
                remember["args_pattern"] = pattern
        version = form.get("version", "")
        try:
            self.gw.decide(
                req.id, who, verdict,  # type: ignore[arg-type]
                version=int(version) if version.isdigit() else None, note=note, args=args,
                confirmation=form.get("confirmation") if verdict == "approve" else None,
                remember=remember,
            )
        except InterlockError as exc:
            return self.gateway_error(exc, again)
        return self.redirect(f"/requests/{quote(req.id)}?done={verdict}")

    def gateway_error(self, exc: InterlockError, again: Callable[..., Response]) -> Response:
        """A refusal from the gateway, said plainly on the page it came from."""
        if isinstance(exc, Conflict) and exc.code == "stale_version":
            return again("This request changed while you were reading it (someone voted, "
                         "edited or delegated). Reload the page to see the latest version, "
                         "then decide again.", status=409)
        if exc.code == "confirmation_required":
            return again("The typed confirmation does not match. Type the phrase shown above "
                         "the field exactly to approve.", status=403)
        return again(exc.message, status=exc.status)

    async def delegate(self, request: Request) -> Response:
        got = await self.posted_on(request)
        if isinstance(got, Response):
            return got
        session, who, form, req = got
        to = [t.strip() for t in form.get("to", "").split(",") if t.strip()]

        def again(message: str, status: int = 422) -> Response:
            return self.request_view(req, session, who, status=status, error=message,
                                     error_form="delegate", form=form)

        if not to:
            return again("Name a group, or a person as user:NAME, to delegate to.")
        version = form.get("version", "")
        try:
            self.gw.delegate(req.id, who, to,
                             version=int(version) if version.isdigit() else None)
        except InterlockError as exc:
            return self.gateway_error(exc, again)
        return self.redirect(f"/requests/{quote(req.id)}?done=delegate")

    async def resolve(self, request: Request) -> Response:
        got = await self.posted_on(request)
        if isinstance(got, Response):
            return got
        session, who, form, req = got
        status = form.get("status", "")

        def again(message: str, status: int = 422) -> Response:
            return self.request_view(req, session, who, status=status, error=message,
                                     error_form="resolve", form=form)

        if status not in ("done", "dismissed", "succeeded", "failed"):
            return again("Choose what happened.")
        try:
            # the API's rule: the request's approvers, or an admin
            check_may_act_on(who, req, self.gw.policy.defaults.approvers)
            self.gw.resolve(req.id, who, status,  # type: ignore[arg-type]
                            note=form.get("note", "").strip() or None)
        except InterlockError as exc:
            return self.gateway_error(exc, again)
        return self.redirect(f"/requests/{quote(req.id)}?done=resolve")

    async def withdraw(self, request: Request) -> Response:
        """The admin who asked for a change to interlock takes it back (the API's cancel)."""
        got = await self.posted_on(request)
        if isinstance(got, Response):
            return got
        session, who, form, req = got

        if not asked_for(req, who):
            return self.error(session, who, 403, "Not yours to withdraw",
                              "Only the admin who asked for a change to interlock may "
                              "withdraw it.")

        def again(message: str, status: int = 422) -> Response:
            return self.request_view(req, session, who, status=status, error=message,
                                     error_form="withdraw", form=form)

        try:
            self.gw.cancel(req.id, who, form.get("reason", "").strip() or None)
        except InterlockError as exc:
            return self.gateway_error(exc, again)
        return self.redirect(f"/requests/{quote(req.id)}?done=withdraw")

    async def check_args(self, request: Request) -> Response:
        """htmx: says whether the edited arguments are a JSON object, and what changed."""
        got = await self.posted(request)
        if isinstance(got, Response):
            return got
        session, who, form = got
        req = self.load(request.path_params["rid"], who)
        if req is None:
            return HTMLResponse("", headers=HEADERS)
        parsed, problem = parse_args(form.get("args", ""))
        changed = views.edited_keys(req.final_args, parsed) if parsed is not None else []
        return self.render("_args_check.html", session, who, problem=problem, changed=changed)

    # -- batches ------------------------------------------------------------------------

    def batch_view(
        self, batch_id: str, agent: str | None, session: Session, who: Principal, *,
        status: int = 200, error: str | None = None, outcome: Any = None,
        form: dict[str, str] | None = None,
    ) -> HTMLResponse:
        items = self.gw.store.list_requests(batch_id=batch_id, agent=agent, limit=1000)
        agents = sorted({r.agent for r in items})
        phrases = sorted({self.gw.confirmation_phrase(r) for r in items
                          if r.state is State.PENDING and r.requirements is not None
                          and r.requirements.confirm})
        return self.render(
            "batch.html", session, who, status=status, batch_id=batch_id, agent=agent,
            agents=agents, items=items, decidable={r.id for r in items
                                                   if views.may_decide(r, who)},
            phrases=phrases, error=error, outcome=outcome, form=defaultdict(str, form or {}),
        )

    async def batch_page(self, request: Request) -> Response:
        auth = self.signed_in(request)
        if isinstance(auth, Response):
            return auth
        session, who = auth
        agent = request.query_params.get("agent") or None
        return self.batch_view(request.path_params["batch_id"], agent, session, who)

    async def batch_decide(self, request: Request) -> Response:
        got = await self.posted(request)
        if isinstance(got, Response):
            return got
        session, who, form = got
        batch_id = request.path_params["batch_id"]
        agent = form.get("agent") or None
        verdict = form.get("verdict", "")
        note = form.get("note", "").strip() or None
        items = {k: v for k, v in form_list(form, "item:").items()
                 if v in ("approve", "deny", "request_changes")}
        if verdict not in ("approve_all", "reject_all", "each"):
            return self.batch_view(batch_id, agent, session, who, status=422, form=form,
                                   error="Choose approve all, reject all, or review each.")
        if verdict == "reject_all" and note is None:
            return self.batch_view(batch_id, agent, session, who, status=422, form=form,
                                   error="Rejecting a batch needs a reason for the agent.")
        if verdict == "each" and not items:
            return self.batch_view(batch_id, agent, session, who, status=422, form=form,
                                   error="Pick a verdict for at least one item.")
        try:
            outcome = self.gw.decide_batch(
                batch_id, who, verdict,  # type: ignore[arg-type]
                items=items if verdict == "each" else None, note=note,
                confirmation=form.get("confirmation", "").strip() or None, agent=agent,
            )
        except InterlockError as exc:
            return self.batch_view(batch_id, agent, session, who, status=exc.status,
                                   error=exc.message, form=form)
        return self.batch_view(batch_id, agent, session, who, outcome=outcome)

    # -- audit --------------------------------------------------------------------------

    async def audit(self, request: Request) -> Response:
        auth = self.signed_in(request)
        if isinstance(auth, Response):
            return auth
        session, who = auth
        q = request.query_params
        rid, agent, actor = (q.get(k, "").strip() for k in ("request", "agent", "actor"))
        store = self.gw.store
        entries = store.timeline(rid) if rid else list(store.audit_entries())
        if agent:
            ids = {r.id for r in store.list_requests(agent=agent, limit=10_000)}
            entries = [e for e in entries
                       if e.request_id in ids or e.actor == f"agent:{agent}"]
        if actor:
            entries = [e for e in entries if e.actor == actor or e.actor.endswith(f":{actor}")]
        entries.reverse()
        return self.render("audit.html", session, who, entries=entries[:200],
                           total=len(entries), filters={"request": rid, "agent": agent,
                                                        "actor": actor})


    async def agents(self, request: Request) -> Response:
        auth = self.signed_in(request)
        if isinstance(auth, Response):
            return auth
        session, who = auth
        return self.render("agents.html", session, who,
                           agents=agent_levels(self.gw.store, self.gw.policy))


def parse_args(text: str) -> tuple[dict[str, Any] | None, str | None]:
    """Edited arguments from the textarea: a JSON object, or a message saying what is wrong."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, (f"The arguments are not valid JSON: {exc.msg} at line {exc.lineno}, "
                      f"column {exc.colno}.")
    if not isinstance(value, dict):
        return None, "The arguments must be a JSON object ({…}), like the agent's."
    return value, None


__all__ = ["parse_args", "routes"]
