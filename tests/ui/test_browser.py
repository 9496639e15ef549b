"""The reviewer UI in a real headless Chromium: sign in, decide, batches, a waiting agent.

uvicorn serves the UI from a thread on a free loopback port; Debian's Chromium is driven by
Playwright. Screenshots of the queue and request pages land in `test-artifacts/`.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from playwright import sync_api
from ui_support import Env

from interlock.gateway import Principal
from interlock.store import State

CHROMIUM = os.environ.get("INTERLOCK_CHROMIUM", "/usr/bin/chromium")
if not Path(CHROMIUM).exists():  # a missing browser is a broken set-up, never a pass
    pytest.fail(f"no Chromium at {CHROMIUM}: run `apt-get install -y chromium` "
                "(.ci/run does)", pytrace=False)

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
AGENT = Principal(role="agent", name="ops-agent")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Env, str]]:
    env = Env(tmp_path_factory.mktemp("browser"))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(env.app(), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield env, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(5)
    env.store.close()


@pytest.fixture(scope="module")
def browser(served: tuple[Env, str]) -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking"],
        )
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, served: tuple[Env, str]) -> Iterator[Any]:
    """A fresh browser context (no cookies); CSP violations, script errors and broken
    subresources fail the test (a 4xx page itself is expected: a refused form)."""
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    pg = context.new_page()
    problems: list[str] = []

    def console(m: Any) -> None:
        if m.type == "error" and not m.text.startswith("Failed to load resource"):
            problems.append(m.text)

    def response(r: Any) -> None:
        if r.status >= 400 and r.request.resource_type != "document":
            problems.append(f"{r.status} {r.url}")

    pg.on("console", console)
    pg.on("response", response)
    pg.on("pageerror", lambda e: problems.append(str(e)))
    yield pg
    context.close()
    assert not problems, problems


def sign_in(page: Any, base: str, secret: str) -> None:
    page.goto(f"{base}/login")
    page.get_by_label("Token").fill(secret)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/")


def test_sign_in_and_queue(served: tuple[Env, str], page: Any) -> None:
    env, base = served
    secret = env.reviewer("ada", "tech-lead", "comms")
    env.submit({"action": "deploy", "environment": "production", "args": {"version": "2.4.0"},
                "reason": "Release 2.4.0: fixes the checkout timeout (INC-4411).",
                "confidence": 0.86, "context": {"plan_step": 3, "plan_total": 4},
                "preview": {"kind": "diff", "content": "--- a/app.yaml\n+++ b/app.yaml\n"
                            "@@ -3,2 +3,2 @@\n-image: shop:2.3.9\n+image: shop:2.4.0\n"
                            " replicas: 6\n"}})
    env.submit({"action": "send_external_email", "recipients": ["billing@acme.example"],
                "reason": "Customer asked for the March invoice again.", "confidence": 0.64,
                "preview": {"kind": "email", "content": {
                    "from": "billing@us.example", "to": ["billing@acme.example"],
                    "subject": "Your March invoice", "body": "Hello,\n\nAttached.\n"}}})
    env.submit({"action": "db.delete_rows", "affected_records": 1840,
                "args": {"table": "sessions", "where": "last_seen < now() - interval '90d'"},
                "reason": "Nightly cleanup of stale sessions.", "confidence": 0.93,
                "preview": {"kind": "sql", "content":
                            "DELETE FROM sessions\nWHERE last_seen < now() - interval '90d';"}})
    page.goto(f"{base}/")
    assert page.url.startswith(f"{base}/login")
    sign_in(page, base, secret)
    items = page.locator(".queue .item")
    assert items.count() == 3
    assert "deploy" in items.first.inner_text()
    # The queue polls its fragment; a new request shows up without a reload.
    env.submit({"action": "db.delete_rows", "reason": "late arrival"})
    sync_api.expect(items).to_have_count(4, timeout=10_000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "queue.png"), full_page=True)
    page.set_viewport_size({"width": 375, "height": 800})
    page.screenshot(path=str(ARTIFACTS / "queue-375.png"), full_page=True)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, f"the queue scrolls sideways at 375 px ({width} px wide)"


def test_approve_with_an_edit(served: tuple[Env, str], page: Any) -> None:
    env, base = served
    secret = env.reviewer("bea", "tech-lead")
    r = env.submit({"action": "db.delete_rows", "affected_records": 5000,
                    "args": {"table": "orders", "limit": 5000},
                    "reason": "Remove test orders left by the load test.",
                    "preview": {"kind": "sql", "content": "DELETE FROM orders LIMIT 5000;"}})
    sign_in(page, base, secret)
    page.goto(f"{base}/requests/{r.id}")
    page.get_by_text("Edit the arguments before approving").click()
    box = page.get_by_label("Arguments (JSON object)")
    box.fill('{"table": "orders", "limit": 50,}')
    page.locator("#args-check .bad").wait_for(timeout=5000)  # checked as you type
    assert "not valid JSON" in page.locator("#args-check").inner_text()
    box.fill(json.dumps({"table": "orders", "limit": 50}))
    page.locator("#args-check .ok").wait_for(timeout=5000)
    assert "limit" in page.locator("#args-check").inner_text()
    page.get_by_label("Note (optional)").fill("start with 50")
    page.locator("form.approve").get_by_role("button", name="Approve").click()
    page.get_by_text("Your approval was recorded.").wait_for()
    done = env.store.get(r.id)
    assert done.state is State.APPROVED
    assert done.final_args == {"table": "orders", "limit": 50}
    assert "edited by a reviewer" in page.content()


def test_refused_typed_confirmation(served: tuple[Env, str], page: Any) -> None:
    env, base = served
    secret = env.reviewer("cy", "tech-lead")
    r = env.submit({"action": "deploy", "environment": "production", "args": {"version": "9"},
                    "reason": "Hotfix for <b>login</b> loop",
                    "context": {"plan_step": 1, "plan_total": 2}, "confidence": 0.71,
                    "alternatives": ["roll back to 8", "wait for Monday"],
                    "preview": {"kind": "diff", "content": "--- a/v\n+++ b/v\n-8\n+9\n"}})
    sign_in(page, base, secret)
    page.goto(f"{base}/requests/{r.id}")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "request.png"), full_page=True)
    page.get_by_label("Type deploy production to confirm").fill("deploy prod")
    page.locator("form.approve").get_by_role("button", name="Approve").click()
    page.get_by_role("alert").first.wait_for()
    assert "does not match" in page.get_by_role("alert").first.inner_text()
    assert env.store.get(r.id).state is State.PENDING
    assert page.locator("b", has_text="login").count() == 0  # the agent's markup stays text
    page.set_viewport_size({"width": 375, "height": 800})
    page.screenshot(path=str(ARTIFACTS / "request-375.png"), full_page=True)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, f"the request page scrolls sideways at 375 px ({width} px wide)"


def test_batch_approve(served: tuple[Env, str], page: Any) -> None:
    env, base = served
    secret = env.reviewer("dee", "support")
    items = [env.submit({"action": "refund", "batch_id": "refunds-7",
                         "args": {"order": f"A-{i}", "amount": 20 + i}}) for i in range(3)]
    sign_in(page, base, secret)
    page.goto(f"{base}/batches/refunds-7")
    assert "3 you may decide now" in page.content()
    page.get_by_role("button", name="Approve all").click()
    page.get_by_text("3 decided").wait_for()
    assert {env.store.get(i.id).state for i in items} == {State.APPROVED}
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "batch.png"), full_page=True)
    page.goto(f"{base}/audit?actor=dee")
    assert page.locator("table.audit tbody tr").count() >= 3
    page.screenshot(path=str(ARTIFACTS / "audit.png"), full_page=True)


def test_deny_reaches_the_waiting_agent(served: tuple[Env, str], page: Any) -> None:
    env, base = served
    secret = env.reviewer("eve", "comms")
    r = env.submit({"action": "send_external_email", "recipients": ["all@customers.example"],
                    "reason": "Announce the outage."})
    heard: dict[str, Any] = {}

    def agent_waits() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            seen = env.gateway.get(r.id, AGENT)
            if seen.state is not State.PENDING:
                heard["state"], heard["reason"] = seen.state, seen.reason
                return
            time.sleep(0.05)

    waiter = threading.Thread(target=agent_waits)
    waiter.start()
    sign_in(page, base, secret)
    page.goto(f"{base}/requests/{r.id}")
    page.locator("form.deny").get_by_role("button", name="Deny").click()
    assert env.store.get(r.id).state is State.PENDING  # `required` stops an empty reason
    page.get_by_label("Reason (required; the agent reads it)").fill(
        "Status page first; no mass email.")
    page.locator("form.deny").get_by_role("button", name="Deny").click()
    page.get_by_text("You denied this request").wait_for()
    waiter.join(10)
    assert heard == {"state": State.DENIED, "reason": "Status page first; no mass email."}


def test_decisions_work_without_javascript(browser: Any, served: tuple[Env, str]) -> None:
    env, base = served
    secret = env.reviewer("fay", "tech-lead")
    r = env.submit({"action": "deploy", "environment": "production", "args": {"v": 1}})
    context = browser.new_context(java_script_enabled=False)
    try:
        pg = context.new_page()
        sign_in(pg, base, secret)
        pg.goto(f"{base}/requests/{r.id}")
        pg.get_by_label("Type deploy production to confirm").fill("deploy production")
        pg.locator("form.approve").get_by_role("button", name="Approve").click()
        pg.get_by_text("Your approval was recorded.").wait_for()
        assert env.store.get(r.id).state is State.APPROVED
    finally:
        context.close()
