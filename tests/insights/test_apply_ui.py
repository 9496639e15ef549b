"""The Apply form on the insights page: admins only, CSRF-checked, a plain POST (no script);
a tightening is applied at once, a loosening becomes a request for a second admin."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from apply_support import admins, advice, changes
from insights_history import History
from starlette.testclient import TestClient

from interlock.server.app import create_app
from interlock.server.settings import ServerSettings


@pytest.fixture
def client(local: History) -> Iterator[TestClient]:
    app = create_app(local.gateway, ServerSettings(secret_key=b"k" * 32), background=False)
    with TestClient(app, base_url="http://testserver") as c:
        yield c


def sign_in(client: TestClient, secret: str) -> None:
    page = client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf
    r = client.post("/login", data={"token": secret, "csrf": csrf.group(1), "next": "/"},
                    follow_redirects=False)
    assert r.status_code == 303


def forms(html: str) -> dict[str, str]:
    """advice id -> the CSRF token of its Apply form."""
    out = {}
    for form in re.findall(r'<form method="post" action="/insights/apply".*?</form>', html,
                           flags=re.S):
        advice_id = re.search(r'name="advice_id" value="([^"]+)"', form)
        csrf = re.search(r'name="csrf" value="([^"]+)"', form)
        assert advice_id and csrf
        out[advice_id.group(1)] = csrf.group(1)
    return out


def test_reviewers_see_no_form_and_cannot_post(client: TestClient, local: History) -> None:
    _, secret = local.store.create_token(kind="reviewer", name="carol", groups=["on-call"],
                                         actor="test")
    sign_in(client, secret)
    page = client.get("/insights")
    assert page.status_code == 200 and not forms(page.text)
    assert "interlock insights apply" in page.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf
    item = advice(local.store, local.gateway.policy.file, "tighten_gate")
    r = client.post("/insights/apply", data={"csrf": csrf.group(1), "advice_id": item["id"]})
    assert r.status_code == 403 and "Only admins" in r.text
    assert not changes(local.store)


def test_admin_applies_a_tightening(client: TestClient, local: History) -> None:
    path = Path(local.gateway.policy.file)
    sign_in(client, admins(local.store, "ann")["ann"])
    page = client.get("/insights?window=7d&by=action")
    found = forms(page.text)
    item = advice(local.store, path, "tighten_gate")
    rubber = advice(local.store, path, "rubber_stamping")
    assert item["id"] in found and rubber["id"] not in found
    assert "Apply this change" in page.text and "Ask a second admin to apply it" in page.text
    r = client.post("/insights/apply", data={"advice_id": item["id"], "csrf": "forged",
                                             "window": "7d", "by": "action"})
    assert r.status_code == 403 and not changes(local.store)
    r = client.post("/insights/apply", follow_redirects=False, data={
        "advice_id": item["id"], "csrf": found[item["id"]], "window": "7d", "by": "action",
        "reason": "a flagged email"})
    assert r.status_code == 303
    assert r.headers["location"].startswith("/insights?window=7d&by=action&applied=")
    assert "review-send-email" in path.read_text()
    [entry] = changes(local.store)
    assert entry.actor == "admin:ann" and entry.data["reason"] == "a flagged email"
    done = client.get(r.headers["location"])
    assert "the server now decides with policy" in done.text
    assert entry.data["new_hash"][:12] in done.text
    # The page now offers advice against the new file; the old form is stale.
    again = client.post("/insights/apply", data={
        "advice_id": item["id"], "csrf": found[item["id"]], "window": "7d", "by": "action"})
    assert again.status_code == 409 and "changed since" in again.text
    assert 'role="alert"' in again.text and len(changes(local.store)) == 1


def test_admin_asks_for_a_loosening(client: TestClient, local: History) -> None:
    path = Path(local.gateway.policy.file)
    before = path.read_text()
    sign_in(client, admins(local.store, "ann", "bob")["ann"])
    item = advice(local.store, path, "allowlist")
    csrf = forms(client.get("/insights").text)[item["id"]]
    r = client.post("/insights/apply", follow_redirects=False,
                    data={"advice_id": item["id"], "csrf": csrf, "window": "7d"})
    assert r.status_code == 303 and "pending=" in r.headers["location"]
    rid = re.search(r"pending=([A-Z0-9]+)", r.headers["location"])
    assert rid
    page = client.get(r.headers["location"])
    assert f'href="/requests/{rid.group(1)}"' in page.text and "second admin" in page.text
    assert path.read_text() == before and not changes(local.store)
    # The request page shows the diff to the second admin, as a diff.
    req = client.get(f"/requests/{rid.group(1)}")
    assert req.status_code == 200 and "policy.change" in req.text
    assert "decision: allow" in req.text
