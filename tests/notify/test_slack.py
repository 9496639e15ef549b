"""Slack: signed button clicks decide as the mapped reviewer; nothing else gets through."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from notify_helpers import BOT, Receiver
from starlette.testclient import TestClient

from interlock.clock import FakeClock
from interlock.gateway import Gateway
from interlock.notify import ENV_VAR, Dispatcher, from_environment, slack
from interlock.server.app import create_app
from interlock.server.settings import ServerSettings
from interlock.store import State, Store

SIGNING = "slack-signing-secret"


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gateway: Gateway, store: Store,
           receiver: Receiver) -> TestClient:
    config = tmp_path / "notify.yaml"
    config.write_text(f"""
targets:
  - name: leads
    slack: {receiver.url("/slack")}
    groups: [tech-lead]
slack:
  signing_secret_env: TEST_SLACK_SIGNING
  users:
    U1: rev
    U2: {{name: outsider, groups: [marketing]}}
""")
    monkeypatch.setenv("TEST_SLACK_SIGNING", SIGNING)
    monkeypatch.setenv(ENV_VAR, str(config))
    store.create_token(kind="reviewer", name="rev", groups=("tech-lead",), actor="test")
    app = create_app(gateway, ServerSettings(), background=False)
    return TestClient(app)


def click(client: TestClient, clock: FakeClock, value: str, *, user: str = "U1",
          action_id: str = slack.APPROVE, secret: str = SIGNING, age: float = 0) -> Any:
    payload = {"type": "block_actions", "user": {"id": user},
               "actions": [{"action_id": action_id, "value": value}]}
    body = urlencode({"payload": json.dumps(payload)}).encode()
    ts = str(int(clock.now() - age))
    headers = {"x-slack-request-timestamp": ts,
               "x-slack-signature": slack.sign(secret, ts, body),
               "content-type": "application/x-www-form-urlencoded"}
    return client.post(slack.PATH, content=body, headers=headers)


def test_a_signed_click_approves(client: TestClient, clock: FakeClock, gateway: Gateway) -> None:
    request = gateway.submit({"action": "task.restart"}, BOT).request
    answer = click(client, clock, f"{request.id}:{request.digest[:16]}")
    assert answer.status_code == 200
    assert "Approved by rev" in answer.json()["text"]
    assert gateway.store.get(request.id).state is State.APPROVED
    [vote] = gateway.store.votes(request.id)
    assert (vote.reviewer, vote.verdict) == ("rev", "approve")


def test_a_badly_signed_click_is_refused(
    client: TestClient, clock: FakeClock, gateway: Gateway
) -> None:
    rid = gateway.submit({"action": "task.restart"}, BOT).request.id
    assert click(client, clock, rid, secret="not the secret").status_code == 401
    assert click(client, clock, rid, age=301).status_code == 401  # replayed too late
    unsigned = client.post(slack.PATH, content=b"payload=%7B%7D")
    assert unsigned.status_code == 401
    assert unsigned.json()["error"]["code"] == "bad_signature"
    assert gateway.store.get(rid).state is State.PENDING
    assert gateway.store.votes(rid) == []


def test_a_signed_but_unreadable_payload_gets_a_plain_answer(
    client: TestClient, clock: FakeClock, gateway: Gateway
) -> None:
    rid = gateway.submit({"action": "task.restart"}, BOT).request.id
    nested = "[" * 100_000 + "]" * 100_000  # json.loads alone would raise RecursionError
    for text in (nested, "{not json", '{"user": {"id": NaN}}', '{"actions": []}'):
        body = urlencode({"payload": text}).encode()
        ts = str(int(clock.now()))
        answer = client.post(slack.PATH, content=body, headers={
            "x-slack-request-timestamp": ts, "x-slack-signature": slack.sign(SIGNING, ts, body),
            "content-type": "application/x-www-form-urlencoded"})
        assert answer.status_code == 200, text[:20]
        assert answer.json()["text"] == "interlock could not read this interaction."
    assert gateway.store.get(rid).state is State.PENDING
    assert gateway.store.votes(rid) == []


def test_a_button_cannot_approve_a_typed_confirmation_request(
    client: TestClient, clock: FakeClock, gateway: Gateway
) -> None:
    rid = gateway.submit({"action": "deploy", "environment": "production"}, BOT).request.id
    answer = click(client, clock, rid)
    assert answer.status_code == 200
    text = answer.json()["text"]
    assert "confirmation" in text and gateway.link(rid) in text
    assert gateway.store.get(rid).state is State.PENDING
    assert gateway.store.votes(rid) == []


def test_deny_unknown_user_and_stale_digest(
    client: TestClient, clock: FakeClock, gateway: Gateway
) -> None:
    rid = gateway.submit({"action": "task.restart"}, BOT).request.id
    assert "not linked" in click(client, clock, rid, user="U9").json()["text"]
    assert "not an approver" in click(client, clock, rid, user="U2").json()["text"]
    assert "changed since" in click(client, clock, f"{rid}:0000").json()["text"]
    assert gateway.store.get(rid).state is State.PENDING
    click(client, clock, rid, action_id=slack.DENY)
    request = gateway.store.get(rid)
    assert request.state is State.DENIED and request.reason == "denied in Slack by rev"


def test_slack_messages_carry_buttons_only_where_a_click_may_decide(
    client: TestClient, clock: FakeClock, gateway: Gateway, receiver: Receiver
) -> None:
    config = from_environment()
    assert config is not None
    plain = gateway.submit({"action": "task.restart"}, BOT).request
    typed = gateway.submit({"action": "deploy", "environment": "production"}, BOT).request
    assert Dispatcher(gateway, config).drain() == 2
    messages = [json.loads(r.body) for r in receiver.at("/slack")]
    buttons = {}
    for m in messages:
        [actions] = [b for b in m["blocks"] if b["type"] == "actions"]
        value = next(e["value"] for e in actions["elements"] if "value" in e)
        buttons[value.split(":")[0]] = [e["action_id"] for e in actions["elements"]]
    assert buttons[plain.id] == [slack.APPROVE, slack.DENY, "interlock.open"]
    assert buttons[typed.id] == [slack.DENY, "interlock.open"]
    # the button from the message approves the request it showed
    [m] = [m for m in messages if plain.id in json.dumps(m)]
    [actions] = [b for b in m["blocks"] if b["type"] == "actions"]
    assert click(client, clock, actions["elements"][0]["value"]).status_code == 200
    assert gateway.store.get(plain.id).state is State.APPROVED


def test_agent_text_cannot_link_or_mention() -> None:
    assert slack.escape("<https://evil|click> <!channel> & co") == (
        "&lt;https://evil|click&gt; &lt;!channel&gt; &amp; co")
