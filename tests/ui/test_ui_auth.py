"""Who may use each page and form of the reviewer UI: signed out, a reviewer in the group that
may act, one who is not, and an admin, for every route `ui.routes` serves.

Signed out, every page and form sends the browser to sign-in (remembering where it was);
signed in, reading is open to every reviewer, and acting follows the same approver rules as
the API (tests/server/test_roles.py holds the matrix of the rest of the app). A route
without a row here fails `test_every_ui_route_has_a_row`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest
from starlette.routing import Route
from ui_support import Env, TestClient, csrf_of, sign_in

from interlock.gateway import Principal
from interlock.store import State

#: Who signs in for each caller, and with which groups (None: nobody signs in).
PEOPLE: dict[str, tuple[str, str, tuple[str, ...]] | None] = {
    "out": None,
    "reviewer": ("alice", "reviewer", ("tech-lead", "on-call")),
    "outsider": ("mallory", "reviewer", ("marketing",)),
    "admin": ("root", "admin", ()),
}
#: Admins beside `admin`, for changes to interlock: the one who asks and a second one.
ASKER, SECOND = "boss", "boss2"

SIGN_IN = "sign in"
"""303 to /login?next=...: the page is kept for after sign-in."""
OK = "200"
REFUSED = "403"


def outcome(status: int, location: str | None) -> str:
    """A response as a matrix cell: a status, `sign in`, or `-> /first-segment`."""
    if status != 303 or location is None:
        return str(status)
    if location.startswith("/login?next="):
        return SIGN_IN
    return "-> /" + urlsplit(location).path.split("/")[1]


def signed_in_only(want: str, *, outsider: str | None = None,
                   admin: str | None = None) -> dict[str, str]:
    return {"out": SIGN_IN, "reviewer": want, "outsider": outsider or want,
            "admin": admin or want}


@dataclass(frozen=True, kw_only=True)
class Row:
    method: str
    path: str
    want: dict[str, str]
    setup: Callable[[Env], str] = lambda env: ""
    """Makes what the row acts on; returns the value of the path's one parameter."""
    form: dict[str, str] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)
    """`asker` / `second`: the admins of a change to interlock, for rows about one."""
    name: str = ""

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}" + (f" [{self.name}]" if self.name else "")

    def url(self, value: str) -> str:
        head, sep, tail = self.path.partition("{")
        return head + value + tail.partition("}")[2] if sep else self.path


# -- what rows act on (the UI's policy: deletes need a tech-lead, iam.* is suggest-only) --

def deletion(env: Env) -> str:
    return env.submit({"action": "db.delete_rows", "args": {"table": "t"}}).id


def suggestion(env: Env) -> str:
    return env.submit({"action": "iam.grant", "args": {"role": "owner"}}).id


def batch(env: Env) -> str:
    for i in range(2):
        env.submit({"action": "db.delete_rows", "batch_id": "b1", "idempotency_key": f"k{i}"})
    return "b1"


def gated_change(env: Env) -> str:
    """`boss` asks to set ops-agent's autonomy level; a second admin must approve it."""
    return env.gateway.propose_autonomy(Principal(role="admin", name=ASKER), "ops-agent",
                                        "guided").id


ROWS: tuple[Row, ...] = (
    Row(method="GET", path="/", want=signed_in_only(OK)),
    Row(method="GET", path="/fragments/queue", want=signed_in_only(OK)),
    # Signing in is open; a signed-in visit to the form goes on to where it was headed.
    Row(method="GET", path="/login", want={"out": OK, "reviewer": "-> /", "outsider": "-> /",
                                           "admin": "-> /"}),
    Row(method="POST", path="/login", form={"token": "carol", "next": "/"},
        want=dict.fromkeys(PEOPLE, "-> /")),
    Row(method="POST", path="/logout", want=dict.fromkeys(PEOPLE, "-> /login")),
    Row(method="GET", path="/requests/{rid}", setup=deletion, want=signed_in_only(OK)),
    Row(method="GET", path="/requests/{rid}/status", setup=deletion, want=signed_in_only(OK)),
    Row(method="POST", path="/requests/{rid}/decide", setup=deletion,
        form={"verdict": "approve"},
        want=signed_in_only("-> /requests", outsider=REFUSED, admin=REFUSED)),
    Row(method="POST", path="/requests/{rid}/decide", setup=gated_change,
        form={"verdict": "approve"}, name="a change to interlock",
        want={"out": SIGN_IN, "reviewer": REFUSED, "outsider": REFUSED,
              "admin": "-> /requests"},
        extra={"asker": REFUSED}),
    Row(method="POST", path="/requests/{rid}/delegate", setup=deletion, form={"to": "dba"},
        want=signed_in_only("-> /requests", outsider=REFUSED, admin=REFUSED)),
    Row(method="POST", path="/requests/{rid}/delegate", setup=gated_change,
        form={"to": "tech-lead"}, name="a change to interlock",
        want=signed_in_only(REFUSED), extra={"asker": REFUSED}),
    Row(method="POST", path="/requests/{rid}/resolve", setup=suggestion,
        form={"status": "done"}, want=signed_in_only("-> /requests", outsider=REFUSED)),
    Row(method="POST", path="/requests/{rid}/withdraw", setup=gated_change,
        form={"reason": "asked too soon"}, name="a change to interlock",
        want=signed_in_only(REFUSED), extra={"asker": "-> /requests"}),
    Row(method="POST", path="/requests/{rid}/withdraw", setup=deletion,
        want=signed_in_only(REFUSED)),
    Row(method="POST", path="/requests/{rid}/check-args", setup=deletion,
        form={"args": "{}"}, want=signed_in_only(OK)),
    Row(method="GET", path="/batches/{batch_id}", setup=batch, want=signed_in_only(OK)),
    # A batch verdict decides only what the caller may decide: outsiders decide nothing
    # (test_outsiders_decide_nothing_in_a_batch).
    Row(method="POST", path="/batches/{batch_id}/decide", setup=batch,
        form={"verdict": "approve_all"}, want=signed_in_only(OK)),
    Row(method="GET", path="/audit", want=signed_in_only(OK)),
    Row(method="GET", path="/agents", want=signed_in_only(OK)),
    Row(method="GET", path="/insights", want=signed_in_only(OK)),
    # Admins only. An admin gets past the role check to the apply itself, which has no
    # policy file to change here (the UI tests' policy is loaded from text): 422.
    Row(method="POST", path="/insights/apply", form={"advice_id": "no-such-advice"},
        want=signed_in_only(REFUSED, admin="422")),
)

#: Rows the UI does not yet get right: the API refuses these calls, the pages let them by.


def rows() -> list[object]:
    return [pytest.param(row, id=row.id) for row in ROWS]


# -- fixtures -------------------------------------------------------------------------------

@dataclass
class Browsers:
    """One signed-in browser per caller (and the admins of changes to interlock)."""

    env: Env
    clients: dict[str, TestClient]
    secrets: dict[str, str]

    def csrf(self, who: str) -> str:
        # Signed in, /login goes on to the queue; signed out, it is the sign-in form: both
        # carry the session's CSRF token.
        return csrf_of(self.clients[who].get("/login").text)


@pytest.fixture
def browsers(env: Env) -> Iterator[Browsers]:
    app = env.app()
    secrets = {"carol": env.reviewer("carol", "tech-lead")}
    clients: dict[str, TestClient] = {}
    people = {**PEOPLE, "asker": (ASKER, "admin", ()), "second": (SECOND, "admin", ())}
    for who, person in people.items():
        client = TestClient(app, base_url="http://testserver")
        if person is not None:
            name, kind, groups = person
            secrets[who] = env.reviewer(name, *groups, kind=kind)
            sign_in(client, secrets[who])
        clients[who] = client
    yield Browsers(env=env, clients=clients, secrets=secrets)
    for client in clients.values():
        client.close()


# -- the matrix -----------------------------------------------------------------------------

@pytest.mark.parametrize("row", rows())
def test_row(browsers: Browsers, row: Row) -> None:
    got = {}
    callers = {**dict.fromkeys(PEOPLE), **dict.fromkeys(row.extra)}
    wanted = {**row.want, **row.extra}
    if row.extra:
        wanted["admin"] = row.want["admin"]  # the admin column is the second admin here
    for who in callers:
        browser = "second" if row.extra and who == "admin" else who
        value = row.setup(browsers.env)
        client = browsers.clients[browser]
        form = {k: browsers.secrets.get(v, v) for k, v in row.form.items()}
        if row.method == "GET":
            r = client.get(row.url(value), follow_redirects=False)
        else:
            r = client.post(row.url(value), data={**form, "csrf": browsers.csrf(browser)},
                            follow_redirects=False)
        got[who] = outcome(r.status_code, r.headers.get("location"))
    assert got == wanted


def test_every_ui_route_has_a_row(env: Env) -> None:
    routes = env.app().routes
    served = {(m, r.path) for r in routes if isinstance(r, Route)
              for m in r.methods or () if m != "HEAD"}
    assert served == {(row.method, row.path) for row in ROWS}
    others = [(type(r).__name__, getattr(r, "path", None)) for r in routes
              if not isinstance(r, Route)]
    assert others == [("Mount", "/static")]


def test_static_files_need_no_session(env: Env) -> None:
    """The sign-in page's own styles and script load before anyone signs in."""
    with TestClient(env.app(), base_url="http://testserver") as client:
        for name in ("ui.css", "htmx.min.js", "favicon.svg"):
            assert client.get(f"/static/{name}").status_code == 200, name


@pytest.mark.parametrize("path", sorted({row.path for row in ROWS if row.method == "POST"}))
def test_every_form_needs_its_csrf_token(browsers: Browsers, path: str) -> None:
    row = next(r for r in ROWS if (r.method, r.path) == ("POST", path))
    value = row.setup(browsers.env)
    r = browsers.clients["reviewer"].post(row.url(value), data={"verdict": "approve"},
                                          follow_redirects=False)
    assert r.status_code == 403


def test_htmx_gets_a_fragment_not_a_redirect(env: Env) -> None:
    with TestClient(env.app(), base_url="http://testserver") as client:
        r = client.get("/fragments/queue", headers={"HX-Request": "true"},
                       follow_redirects=False)
    assert r.status_code == 401 and 'href="/login"' in r.text


def test_outsiders_decide_nothing_in_a_batch(browsers: Browsers) -> None:
    name = batch(browsers.env)
    r = browsers.clients["outsider"].post(f"/batches/{name}/decide", data={
        "verdict": "approve_all", "csrf": browsers.csrf("outsider")})
    assert r.status_code == 200
    states = {x.state for x in browsers.env.store.list_requests(batch_id=name)}
    assert states == {State.PENDING}


def test_who_asked_for_a_change_sees_no_approve_form(browsers: Browsers) -> None:
    """The admin who asked reads it, is told a second admin must approve it, and finds no
    form nor queue entry; the second admin approves it from the page."""
    rid = gated_change(browsers.env)
    asker = browsers.clients["asker"]
    page = asker.get(f"/requests/{rid}").text
    assert "a second admin must approve it" in page
    assert f'action="/requests/{rid}/decide"' not in page
    assert f'action="/requests/{rid}/delegate"' not in page
    assert f'action="/requests/{rid}/withdraw"' in page  # theirs to take back
    assert rid not in asker.get("/").text
    second = browsers.clients["second"]
    page = second.get(f"/requests/{rid}").text
    assert f'action="/requests/{rid}/decide"' in page
    assert "a second admin must approve it" not in page
    assert rid in second.get("/").text
    r = second.post(f"/requests/{rid}/decide", data={
        "verdict": "approve", "csrf": csrf_of(page)}, follow_redirects=False)
    assert r.status_code == 303
    assert browsers.env.store.get(rid).state is State.SUCCEEDED


def test_who_asked_for_a_change_may_withdraw_it(browsers: Browsers) -> None:
    rid = gated_change(browsers.env)
    asker = browsers.clients["asker"]
    page = asker.get(f"/requests/{rid}").text
    r = asker.post(f"/requests/{rid}/withdraw", data={
        "reason": "asked too soon", "csrf": csrf_of(page)}, follow_redirects=False)
    assert r.status_code == 303
    withdrawn = browsers.env.store.get(rid)
    assert (withdrawn.state, withdrawn.reason) == (State.CANCELLED, "asked too soon")
    assert "Withdrawn." in asker.get(r.headers["location"]).text
