"""Helpers for the reviewer UI tests: a gateway on a fresh SQLite store, people, requests.

The UI is mounted alone (`Starlette(routes=ui.routes(...))`), so these tests need no API.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    # starlette prefers `httpx2` under its test client; plain httpx still works the same.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

from interlock.gateway import Gateway, Principal
from interlock.policy import load_policy_text
from interlock.server import ui
from interlock.server.settings import ServerSettings
from interlock.store import Request, Store, open_store

POLICY = """
version: 1
defaults:
  decision: allow
  approvers: [on-call]
  timeout: 1h
  on_timeout: deny
risk:
  high: ["deploy", "send_external_email", "db.delete*"]
  low: ["read_*"]
rules:
  - name: production-approval
    match: {environment: production, action: deploy}
    decision: require_approval
    approvers: [tech-lead]
    confirm: typed
    guidance: "Check the rollback plan and the change window."
  - name: outbound-email
    match: {action: send_external_email}
    decision: require_approval
    approvers: [comms]
  - name: deletes
    match: {action: "db.delete*"}
    decision: require_approval
    approvers: [tech-lead]
    escalate_to: [dba, "user:erin"]
  - name: refunds
    match: {action: refund}
    decision: require_approval
    approvers: [support]
  - name: large-payments
    match: {action: send_payment}
    decision: require_approval
    stages:
      - {name: finance, approvers: [finance], quorum: 2}
      - {name: security, approvers: [security], quorum: 1}
  - name: iam-is-human-only
    match: {action: "iam.*"}
    decision: suggest
"""


class Env:
    """A gateway with a store, the UI's settings, and helpers to make people and requests."""

    def __init__(self, tmp: Path) -> None:
        self.store: Store = open_store(f"sqlite:///{tmp / 'ui.db'}")
        self.gateway = Gateway(load_policy_text(POLICY, "ui.yaml"), self.store)
        self.settings = ServerSettings(secret_key=b"k" * 32)

    def app(self, settings: ServerSettings | None = None) -> Starlette:
        return Starlette(routes=ui.routes(self.gateway, settings or self.settings))

    def reviewer(self, name: str, *groups: str, kind: str = "reviewer") -> str:
        _, secret = self.store.create_token(
            kind=kind, name=name, actor="test", groups=list(groups))  # type: ignore[arg-type]
        return secret

    def submit(self, body: dict[str, Any], agent: str = "ops-agent") -> Request:
        return self.gateway.submit(body, Principal(role="agent", name=agent)).request


CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "the page has no CSRF field"
    return found.group(1)


def sign_in(client: TestClient, secret: str) -> None:
    page = client.get("/login")
    response = client.post("/login", data={"token": secret, "csrf": csrf_of(page.text),
                                           "next": "/"}, follow_redirects=False)
    assert response.status_code == 303, response.text

