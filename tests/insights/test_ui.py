"""The insights page of the reviewer UI: signed-in only, charts drawn as SVG, advice diffs."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from insights_history import History
from starlette.testclient import TestClient

from interlock.server.app import create_app
from interlock.server.settings import ServerSettings


@pytest.fixture
def client(history: History) -> Iterator[TestClient]:
    app = create_app(history.gateway, ServerSettings(secret_key=b"k" * 32), background=False)
    with TestClient(app, base_url="http://testserver") as c:
        yield c


def sign_in(client: TestClient, history: History) -> None:
    _, secret = history.store.create_token(kind="reviewer", name="carol", groups=["on-call"],
                                           actor="test")
    page = client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf
    r = client.post("/login", data={"token": secret, "csrf": csrf.group(1), "next": "/"},
                    follow_redirects=False)
    assert r.status_code == 303


def test_needs_a_session(client: TestClient) -> None:
    r = client.get("/insights", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")


def test_page_renders_charts_and_advice(client: TestClient, history: History) -> None:
    sign_in(client, history)
    page = client.get("/insights?window=7d&by=action")
    assert page.status_code == 200
    html = page.text
    assert '<a href="/insights">Insights</a>' in html
    assert html.count('<svg class="chart"') == 3
    for label in ("Approvals and denials over time", "Time-to-decision distribution",
                  "Queue depth over time"):
        assert f'aria-label="{label}"' in html
    assert 'class="c-approved"' in html and 'class="c-denied"' in html
    assert 'class="c-fast"' in html and "<polyline class=\"c-queue\"" in html
    assert "<title>&lt;3s: 60 decisions</title>" in html
    assert '<span class="d-add">+    decision: allow</span>' in html
    assert "second admin" in html and "ticket.label" in html
    assert 'href="/static/insights.css"' in html
    assert " style=" not in html and "<script>" not in html  # the CSP allows neither
    css = client.get("/static/insights.css")
    assert css.status_code == 200 and ".c-approved" in css.text


def test_bad_window_is_an_error_page(client: TestClient, history: History) -> None:
    sign_in(client, history)
    r = client.get("/insights?window=soon")
    assert r.status_code == 400 and "a window is a number" in r.text
