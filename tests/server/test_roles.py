"""The authorization matrix: every route the app serves outside the reviewer UI, called by
each kind of caller, and whether it is allowed or refused, status and error code.

The callers: no token, the agent that owns the request, another agent ("wrong agent"), a
reviewer in the group that may act (`reviewer`), one who is not (`outsider`), and an admin.
The routes come from the app itself, so a new endpoint without a row here fails
`test_every_route_has_a_row`; the reviewer UI's routes have their own matrix in
tests/ui/test_ui_auth.py.

What the rows pin, where the code had a choice:
- another agent's request is a 404, not a 403: an agent cannot learn which ids exist;
- approval rights come from the request's approvers, not from the token's role: an admin
  outside them is refused a vote (403 `not_an_approver`), but may resolve, review and rate;
- interlock's own changes (autonomy levels, policy changes) wait for a second admin: the
  admin who asked may not decide them (`self_approval`) and nobody may delegate them, but
  that admin may withdraw one (`cancel`; any other admin: 403 `not_the_asker`);
- an admin-only call allowed through is shown by a non-auth answer where a minimal body
  cannot succeed (`POST /v1/insights/apply` with an unknown advice id is a 404).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Route
from tests.server.conftest import POLICY, Env, make_tokens

from interlock.clock import FakeClock
from interlock.gateway import Gateway
from interlock.notify import ENV_VAR
from interlock.notify.slack import PATH as SLACK_PATH
from interlock.policy import load_policy
from interlock.server import ui
from interlock.server.app import create_app, endpoints
from interlock.server.settings import ServerSettings
from interlock.store import State, Store

pytestmark = pytest.mark.anyio

#: Every caller a row answers for, and whose token it sends (None: no Authorization).
CALLERS: dict[str, str | None] = {
    "none": None, "agent": "bot", "other_agent": "other", "reviewer": "rev",
    "outsider": "outsider", "admin": "boss",
}
#: The token role each caller holds ("none": no token at all).
KIND = {"none": "none", "agent": "agent", "other_agent": "agent", "reviewer": "reviewer",
        "outsider": "reviewer", "admin": "admin"}


@dataclass(frozen=True)
class Want:
    """An expected answer: the status, and the error code when it is an error."""

    status: int
    code: str | None = None

    def __str__(self) -> str:
        return f"{self.status} {self.code}" if self.code else str(self.status)


OK = Want(200)
NO_TOKEN = Want(401, "unauthorized")
WRONG_ROLE = Want(403, "wrong_role")
HIDDEN = Want(404, "not_found")
NOT_APPROVER = Want(403, "not_an_approver")
NOT_ASKER = Want(403, "not_the_asker")

Setup = Callable[[Env], Awaitable[str]]


async def nothing(env: Env) -> str:
    return ""


@dataclass(frozen=True, kw_only=True)
class Row:
    """One scenario of one route: what each caller gets."""

    method: str
    path: str
    """As the route table spells it; its one `{param}` is filled by `setup`."""
    want: dict[str, Want]
    setup: Setup = nothing
    body: object = None
    query: str = ""
    who: dict[str, str] = field(default_factory=dict)
    """Callers whose token differs from CALLERS here (e.g. the reviewer in the right group)."""
    extra: dict[str, tuple[str, Want]] = field(default_factory=dict)
    """Callers beyond the six, for this row only: name -> (token, answer)."""
    name: str = ""

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}" + (f" [{self.name}]" if self.name else "")


def agent_only(*, wrong: Want = OK) -> dict[str, Want]:
    """Agent tokens only; `wrong`: what another agent than the owner gets."""
    return {"none": NO_TOKEN, "agent": OK, "other_agent": wrong, "reviewer": WRONG_ROLE,
            "outsider": WRONG_ROLE, "admin": WRONG_ROLE}


def reviewers(*, outsider: Want = OK, admin: Want = OK) -> dict[str, Want]:
    """Reviewer tokens (admins pass every reviewer check)."""
    return {"none": NO_TOKEN, "agent": WRONG_ROLE, "other_agent": WRONG_ROLE, "reviewer": OK,
            "outsider": outsider, "admin": admin}


def admins(allowed: Want = OK) -> dict[str, Want]:
    return {"none": NO_TOKEN, "agent": WRONG_ROLE, "other_agent": WRONG_ROLE,
            "reviewer": WRONG_ROLE, "outsider": WRONG_ROLE, "admin": allowed}


def everyone(want: Want = OK) -> dict[str, Want]:
    return dict.fromkeys(CALLERS, want)


# -- what a row needs to exist before each call --------------------------------------------

async def pending(env: Env) -> str:
    """bot's `task.run`, waiting for a tech-lead."""
    return str((await env.submit(action="task.run"))["id"])


async def allowed(env: Env) -> str:
    return str((await env.submit(action="read_file"))["id"])


async def executing(env: Env) -> str:
    rid = await allowed(env)
    assert (await env.post(f"/v1/actions/{rid}/claim", "bot")).status_code == 200
    return rid


async def denied(env: Env) -> str:
    return str((await env.submit(action="table.drop"))["id"])


async def suggested(env: Env) -> str:
    """A `suggest` request: no rule names approvers, so the defaults (on-call) may close it."""
    return str((await env.submit(action="iam.grant"))["id"])


async def finished_notified(env: Env) -> str:
    rid = str((await env.submit(action="send_email", recipients=["x@example.com"]))["id"])
    assert (await env.post(f"/v1/actions/{rid}/claim", "bot")).status_code == 200
    r = await env.post(f"/v1/actions/{rid}/outcome", "bot", {"status": "succeeded"})
    assert r.status_code == 200
    return rid


_batches = itertools.count()


async def batch(env: Env, items: int = 1) -> str:
    # one item by default: each caller of a row gets a batch of its own, and what a refused
    # caller leaves pending counts toward bot's pending limit
    name = f"b{next(_batches)}"
    for i in range(items):
        await env.submit(action="task.run", batch_id=name, idempotency_key=f"{name}-{i}")
    return name


async def grant(env: Env) -> str:
    """A live decision-memory grant: rev approves a task.run and remembers it for its run."""
    run = f"run-{next(_batches)}"
    rid = str((await env.submit(action="task.run", context={"run_id": run}))["id"])
    r = await env.decide(rid, "rev", remember={"scope": "run"})
    assert r.status_code == 200, r.text
    [made] = [g for g in env.store.grants(agent="bot", live=True) if g.request_id == rid]
    return made.id


async def agent_bot(env: Env) -> str:
    return "bot"


async def gated_change(env: Env) -> str:
    """boss asks to set bot's autonomy level: a request of the `interlock` agent."""
    r = await env.post("/v1/agents/bot/autonomy", "boss", {"level": "guided"})
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


EVALUATION = {"subject": {"type": "agent", "id": "bot"}, "action": {"name": "read_file"},
              "resource": {"type": "file", "id": "notes.txt"}}


def resume(env: Env, rid: str) -> object:
    return {"action": {"name": "task.run"}, "resource": {"type": "task", "id": "t"},
            "context": {"interlock_request_id": rid}}


_A = "/v1/actions/{id}"
ROWS: tuple[Row, ...] = (
    # -- agents (SPEC §5): their own requests only --
    Row(method="POST", path="/v1/actions", body={"action": "read_file", "agent": "bot"},
        want=agent_only(wrong=Want(403, "agent_mismatch"))),
    Row(method="POST", path="/v1/actions", body={"action": "read_file"}, name="as itself",
        want=agent_only()),
    Row(method="GET", path=_A, setup=pending,
        want={**reviewers(), "agent": OK, "other_agent": HIDDEN}),
    Row(method="GET", path=_A + "/wait", query="?timeout=0", setup=pending,
        want=agent_only(wrong=HIDDEN)),
    Row(method="GET", path=_A + "/events", setup=denied,
        want={**reviewers(), "agent": OK, "other_agent": HIDDEN}),
    Row(method="POST", path=_A + "/claim", setup=allowed, want=agent_only(wrong=HIDDEN)),
    Row(method="POST", path=_A + "/outcome", setup=executing,
        body={"status": "succeeded", "summary": "done"}, want=agent_only(wrong=HIDDEN)),
    # an admin passes the role check to withdraw a change to interlock they asked for
    Row(method="POST", path=_A + "/cancel", setup=pending, body={},
        want=agent_only(wrong=HIDDEN) | {"admin": NOT_ASKER}),
    Row(method="POST", path=_A + "/cancel", setup=gated_change, body={},
        name="a change to interlock", who={"admin": "boss2"},
        want=agent_only(wrong=HIDDEN) | {"agent": HIDDEN, "admin": NOT_ASKER},
        extra={"asker": ("boss", OK)}),
    Row(method="POST", path="/v1/evaluate", body={"action": "deploy", "agent": "bot"},
        want={**reviewers(), "agent": OK, "other_agent": Want(403, "agent_mismatch")}),
    # -- reviewers: approval rights are the request's approvers (tech-lead here) --
    Row(method="POST", path=_A + "/decision", setup=pending, body={"verdict": "approve"},
        want=reviewers(outsider=NOT_APPROVER, admin=NOT_APPROVER)),
    Row(method="POST", path=_A + "/decision", setup=gated_change, body={"verdict": "approve"},
        name="a change to interlock", who={"admin": "boss2"},
        want=reviewers(outsider=NOT_APPROVER) | {"reviewer": NOT_APPROVER},
        extra={"asker": ("boss", Want(403, "self_approval"))}),
    Row(method="POST", path=_A + "/delegate", setup=pending, body={"to": "engineering-manager"},
        want=reviewers(outsider=NOT_APPROVER, admin=NOT_APPROVER)),
    Row(method="POST", path=_A + "/delegate", setup=gated_change, body={"to": "tech-lead"},
        name="a change to interlock", who={"admin": "boss2"},
        want=reviewers() | dict.fromkeys(("reviewer", "outsider", "admin"),
                                         Want(403, "not_delegable")),
        extra={"asker": ("boss", Want(403, "not_delegable"))}),
    Row(method="POST", path=_A + "/resolve", setup=suggested,
        body={"status": "done", "note": "granted by hand"}, who={"reviewer": "oncall"},
        want=reviewers(outsider=NOT_APPROVER)),
    Row(method="POST", path=_A + "/review", setup=finished_notified, body={"verdict": "ok"},
        who={"reviewer": "oncall"}, want=reviewers(outsider=NOT_APPROVER)),
    Row(method="POST", path=_A + "/feedback", setup=finished_notified,
        body={"rating": "correct"}, who={"reviewer": "oncall"},
        want=reviewers(outsider=NOT_APPROVER)),
    # Any reviewer may send a batch verdict; it decides only the items they may decide
    # (test_outsider_batch_decides_nothing).
    Row(method="POST", path="/v1/batches/{batch_id}/decision", setup=batch,
        body={"verdict": "approve_all"}, want=reviewers()),
    Row(method="GET", path="/v1/queue", want=reviewers()),
    # -- operations --
    Row(method="GET", path="/v1/audit", want=reviewers()),
    Row(method="GET", path="/v1/audit/verify", want=reviewers()),
    Row(method="GET", path="/v1/insights", want=reviewers()),
    Row(method="POST", path="/v1/insights/apply", body={"advice_id": "no-such-advice"},
        want=admins(Want(404, "no_such_advice"))),
    Row(method="GET", path="/v1/pauses", want=reviewers()),
    Row(method="POST", path="/v1/pause", body={"agent": "ghost", "reason": "drill"},
        want=admins()),
    Row(method="POST", path="/v1/unpause", body={"agent": "ghost"}, want=admins()),
    Row(method="GET", path="/healthz", want=everyone()),
    Row(method="GET", path="/metrics", want=everyone()),
    Row(method="GET", path="/openapi.json", want=everyone()),
    # -- autonomy: reviewers read levels; an admin asks, a second admin approves --
    Row(method="GET", path="/v1/agents", want=reviewers()),
    Row(method="POST", path="/v1/agents/{name}/autonomy", setup=agent_bot,
        body={"level": "guided"}, want=admins()),
    # -- decision-memory grants: any reviewer may list and revoke (revoking only tightens) --
    Row(method="GET", path="/v1/grants", want=reviewers()),
    Row(method="DELETE", path="/v1/grants/{id}", setup=grant, want=reviewers()),
    Row(method="POST", path="/v1/grants/{id}/revoke", setup=grant, want=reviewers()),
    # -- AuthZEN: agent tokens evaluating as themselves --
    Row(method="POST", path="/access/v1/evaluation", body=EVALUATION,
        want=agent_only(wrong=Want(403, "subject_mismatch"))),
    Row(method="POST", path="/access/v1/evaluation", setup=pending, body=resume,
        name="resuming a request", want=agent_only(wrong=HIDDEN)),
    Row(method="POST", path="/access/v1/evaluations",
        body={"subject": EVALUATION["subject"], "evaluations": [
            {"action": EVALUATION["action"], "resource": EVALUATION["resource"]}]},
        want=agent_only(wrong=Want(403, "subject_mismatch"))),
    # -- Slack interactivity: only Slack's signature counts, never a Bearer token --
    Row(method="POST", path=SLACK_PATH, body={"payload": "{}"},
        want=everyone(Want(401, "bad_signature"))),
)


# -- the app under test ---------------------------------------------------------------------

SLACK = "slack:\n  signing_secret: not-a-real-secret\n  users: {}\n"


@pytest.fixture
async def env(store: Store, clock: FakeClock, tmp_path: Path,
              monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Env]:
    """The whole app, Slack route included, on a copy of the policy (an apply never touches
    the one in the tree), with a second admin beside the conftest's people."""
    policy = tmp_path / "interlock.yaml"
    policy.write_text(POLICY.read_text())
    notify = tmp_path / "notify.yaml"
    notify.write_text(SLACK)
    monkeypatch.setenv(ENV_VAR, str(notify))
    app = create_app(Gateway(load_policy(policy), store),
                     ServerSettings(max_body=64 * 1024), background=False)
    tokens = make_tokens(store)
    tokens["boss2"] = store.create_token(kind="admin", name="boss2", actor="test")[1]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://interlock.test") as c:
        yield Env(app=app, store=store, clock=clock, tokens=tokens, client=c)


def served(routes: Iterable[BaseRoute]) -> set[tuple[str, str]]:
    """(method, path) of every route; HEAD is GET's twin and runs the same handler."""
    return {(method, route.path) for route in routes if isinstance(route, Route)
            for method in route.methods or () if method != "HEAD"}


def ui_routes(app: Starlette) -> set[tuple[str, str]]:
    ctx = app.state.ctx
    return served(ui.routes(ctx.gateway, ctx.settings))


# -- the matrix -----------------------------------------------------------------------------

async def call(env: Env, row: Row, who: str | None, value: str) -> httpx.Response:
    path = re.sub(r"{\w+}", value, row.path, count=1)
    body = row.body(env, value) if callable(row.body) else row.body
    return await env.client.request(row.method, path + row.query, headers=env.auth(who),
                                    json=body if row.method in ("POST", "DELETE") else None)


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.id)
async def test_row(env: Env, row: Row) -> None:
    callers = {name: row.who.get(name, token) for name, token in CALLERS.items()}
    callers.update({name: token for name, (token, _) in row.extra.items()})
    wanted = {**row.want, **{name: want for name, (_, want) in row.extra.items()}}
    assert set(row.want) == set(CALLERS), f"{row.id}: a row answers for every caller"
    got: dict[str, Want] = {}
    for name, token in callers.items():
        value = await row.setup(env)
        r = await call(env, row, token, value)
        if r.status_code >= 400:
            error = r.json()
            assert set(error) == {"error"} and set(error["error"]) == {"code", "message"}, r.text
            got[name] = Want(r.status_code, error["error"]["code"])
        else:
            got[name] = Want(r.status_code)
    assert {k: str(v) for k, v in got.items()} == {k: str(v) for k, v in wanted.items()}


async def test_every_route_has_a_row(env: Env) -> None:
    """Every (method, path) the app serves, bar the UI's, has a row, and every row a route:
    a new endpoint cannot ship without saying who may call it."""
    app = env.app
    others = [(type(r).__name__, getattr(r, "path", None)) for r in app.routes
              if not isinstance(r, Route)]
    assert others == [("Mount", "/static")], "a mount hides its routes from this check"
    api = served(app.routes) - ui_routes(app)
    rows = {(row.method, row.path) for row in ROWS}
    assert api - rows == set(), "routes without a row in the authorization matrix"
    assert rows - api == set(), "rows for routes the app does not serve"
    table = {(ep.method, ep.path) for ep in endpoints()}
    assert table <= rows
    doc = (await env.client.get("/openapi.json")).json()
    documented = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    assert documented == table


def test_rows_agree_with_the_documented_roles() -> None:
    """A caller gets past the role check exactly when the route table (and so /openapi.json)
    lists its token's role: the documentation and the matrix cannot drift apart."""
    for ep in endpoints():
        roles = set(ep.roles) | ({"admin"} if "reviewer" in ep.roles else set())
        for row in (r for r in ROWS if (r.method, r.path) == (ep.method, ep.path)):
            for caller, want in row.want.items():
                passed = want != NO_TOKEN and want != WRONG_ROLE
                expected = not ep.roles or KIND[caller] in roles
                assert passed == expected, (row.id, caller, want, ep.roles)


# -- what a single status cannot show -------------------------------------------------------

async def test_outsider_batch_decides_nothing(env: Env) -> None:
    name = await batch(env, items=2)
    r = await env.post(f"/v1/batches/{name}/decision", "outsider", {"verdict": "approve_all"})
    assert r.json()["results"] == []
    assert len(r.json()["skipped"]) == 2
    r = await env.post(f"/v1/batches/{name}/decision", "rev", {"verdict": "approve_all"})
    assert len(r.json()["results"]) == 2


async def test_a_change_to_interlock_needs_a_second_admin(env: Env) -> None:
    """The admin who asked sees it nowhere to decide and cannot hand it to a reviewer; the
    second admin's approval applies it."""
    rid = await gated_change(env)
    assert rid not in [i["id"] for i in (await env.get("/v1/queue", "boss")).json()["items"]]
    assert rid in [i["id"] for i in (await env.get("/v1/queue", "boss2")).json()["items"]]
    for verdict in ("approve", "deny", "request_changes"):
        r = await env.decide(rid, "boss", verdict, note="mine")
        assert (r.status_code, r.json()["error"]["code"]) == (403, "self_approval")
    r = await env.post(f"/v1/actions/{rid}/delegate", "boss", {"to": ["tech-lead"]})
    assert (r.status_code, r.json()["error"]["code"]) == (403, "not_delegable")
    assert (await env.decide(rid, "rev")).status_code == 403
    assert env.store.get(rid).state is State.PENDING
    r = await env.decide(rid, "boss2")
    assert (r.status_code, r.json()["state"]) == (200, "succeeded")
    levels = (await env.get("/v1/agents", "rev")).json()["agents"]
    assert {a["name"]: a["stored"] for a in levels}["bot"] == "guided"


async def test_pinned_agent_token(env: Env) -> None:
    _, secret = env.store.create_token(kind="agent", name="pinned", actor="test",
                                       environment="staging", actions=["read_*"])
    h = {"Authorization": f"Bearer {secret}"}
    r = await env.client.post("/v1/actions", json={"action": "read_x", "environment": "prod"},
                              headers=h)
    assert (r.status_code, r.json()["error"]["code"]) == (403, "environment_pinned")
    r = await env.client.post("/v1/actions", json={"action": "deploy"}, headers=h)
    assert (r.status_code, r.json()["error"]["code"]) == (403, "action_not_allowed")
    r = await env.client.post("/v1/actions", json={"action": "read_x"}, headers=h)
    assert r.status_code == 200


async def test_cookies_and_other_schemes_are_not_credentials(env: Env) -> None:
    secret = env.tokens["rev"]
    for headers in ({"Cookie": f"session={secret}"}, {"Authorization": f"Basic {secret}"},
                    {"Authorization": secret}, {"Authorization": "Bearer "}):
        r = await env.client.get("/v1/queue", headers=headers)
        assert (r.status_code, r.headers["www-authenticate"]) == (401, "Bearer"), headers


async def test_revoked_and_expired_tokens(env: Env) -> None:
    _token, secret = env.store.create_token(kind="reviewer", name="gone", actor="test",
                                           expires_at=env.clock.now() + 60)
    h = {"Authorization": f"Bearer {secret}"}
    assert (await env.client.get("/v1/queue", headers=h)).status_code == 200
    env.app.state.ctx.tokens.clear()
    env.clock.advance(61)
    assert (await env.client.get("/v1/queue", headers=h)).status_code == 401
    token2, secret2 = env.store.create_token(kind="reviewer", name="gone2", actor="test")
    env.store.revoke_token(token2.id, actor="test")
    r = await env.client.get("/v1/queue", headers={"Authorization": f"Bearer {secret2}"})
    assert r.status_code == 401
    assert secret2 not in r.text


async def test_the_admin_who_asked_may_withdraw_the_change(env: Env) -> None:
    rid = await gated_change(env)
    r = await env.post(f"/v1/actions/{rid}/cancel", "boss2", {})
    assert (r.status_code, r.json()["error"]["code"]) == (403, "not_the_asker")
    r = await env.post(f"/v1/actions/{rid}/cancel", "boss", {})
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["reason"]) == ("cancelled", "withdrawn by boss")
    [entry] = [e for e in env.store.timeline(rid) if e.event == "state.cancelled"]
    assert entry.actor == "admin:boss"
    assert (await env.decide(rid, "boss2")).status_code == 409  # nothing left to approve
