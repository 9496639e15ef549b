"""`POST /v1/insights/apply` through the real app: admins only; the server decides with the new
policy at once; a loosening waits for a second admin, whose approval applies it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from apply_support import admins, advice, changes
from insights_history import History
from starlette.applications import Starlette

from interlock.insights.advice import text_hash
from interlock.server.app import create_app
from interlock.server.settings import ServerSettings

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def app(local: History) -> Starlette:
    return create_app(local.gateway, ServerSettings(), background=False)


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://interlock.test") as c:
        yield c


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def token(h: History, kind: str, name: str, groups: tuple[str, ...] = ()) -> dict[str, str]:
    return bearer(h.store.create_token(kind=kind, name=name, groups=groups,  # type: ignore[arg-type]
                                       actor="test")[1])


async def test_only_admins_apply(local: History, client: httpx.AsyncClient) -> None:
    item = advice(local.store, local.gateway.policy.file, "tighten_gate")
    body = {"advice_id": item["id"]}
    got = {}
    for who, headers in {
        "agent": token(local, "agent", "mailer"),
        "reviewer": token(local, "reviewer", "carol", ("on-call",)),
        "none": {},
    }.items():
        r = await client.post("/v1/insights/apply", json=body, headers=headers)
        got[who] = r.status_code
        assert set(r.json()) == {"error"}
    assert got == {"agent": 403, "reviewer": 403, "none": 401}
    assert not changes(local.store)
    r = await client.post("/v1/insights/apply", json=body, headers=bearer(
        admins(local.store, "ann")["ann"]))
    assert r.status_code == 200, r.text


async def test_tightening_applies_and_the_server_decides_with_it(
        local: History, app: Starlette, client: httpx.AsyncClient) -> None:
    path = Path(local.gateway.policy.file)
    before = path.read_text()
    ann = bearer(admins(local.store, "ann")["ann"])
    mailer = token(local, "agent", "mailer")
    r = await client.post("/v1/actions", json={"action": "send_email"}, headers=mailer)
    assert r.json()["decision"] == "allow"
    item = advice(local.store, path, "tighten_gate")
    r = await client.post("/v1/insights/apply", headers=ann,
                          json={"advice_id": item["id"], "reason": "one was flagged"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "applied" and body["request"] is None
    assert body["policy_file"] == "interlock.yaml" and body["diff"] == item["diff"]
    assert body["old_hash"] == text_hash(before) and body["new_hash"] == text_hash(path.read_text())
    r = await client.post("/v1/actions", json={"action": "send_email"}, headers=mailer)
    assert r.json()["decision"] == "require_approval"
    assert "review-send-email" in r.json()["rules"]
    assert (await client.get("/healthz")).json()["policy_hash"] == body["new_hash"]
    assert app.state.gateway.policy.hash == body["new_hash"]
    verify = await client.get("/v1/audit/verify", headers=ann)
    assert verify.json()["ok"] is True
    # The same id again: the file moved on, so it is stale now.
    r = await client.post("/v1/insights/apply", headers=ann, json={"advice_id": item["id"]})
    assert r.status_code == 409 and r.json()["error"]["code"] == "policy_changed"
    assert len(changes(local.store)) == 1


async def test_loosening_needs_a_second_admin(local: History, client: httpx.AsyncClient) -> None:
    path = Path(local.gateway.policy.file)
    before = path.read_text()
    secrets = admins(local.store, "ann", "bob")
    ann, bob = bearer(secrets["ann"]), bearer(secrets["bob"])
    triage = token(local, "agent", "triage")
    item = advice(local.store, path, "allowlist")
    r = await client.post("/v1/insights/apply", headers=ann,
                          json={"advice_id": item["id"], "reason": "always approved"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "pending" and body["new_hash"] is None
    rid = body["request"]["id"]
    assert body["request"]["state"] == "pending" and body["request"]["agent"] == "interlock"
    assert path.read_text() == before
    r = await client.post("/v1/actions", json={"action": "ticket.label"}, headers=triage)
    assert r.json()["decision"] == "require_approval"
    own = await client.post(f"/v1/actions/{rid}/decision", headers=ann,
                            json={"verdict": "approve"})
    assert own.status_code == 403 and own.json()["error"]["code"] == "self_approval"
    queue = (await client.get("/v1/queue", headers=bob)).json()
    assert rid in [q["id"] for q in queue["items"]]
    r = await client.post(f"/v1/actions/{rid}/decision", headers=bob,
                          json={"verdict": "approve"})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "succeeded"
    assert "decision: allow" in path.read_text()
    r = await client.post("/v1/actions", json={"action": "ticket.label"}, headers=triage)
    assert r.json()["decision"] == "allow"
    [entry] = changes(local.store)
    assert entry.request_id == rid and entry.data["approved_by"] == ["bob"]


async def test_errors_are_the_one_shape(local: History, client: httpx.AsyncClient) -> None:
    ann = bearer(admins(local.store, "ann")["ann"])
    item = advice(local.store, local.gateway.policy.file, "tighten_gate")
    cases = [
        ({"advice_id": item["id"].replace("send_email", "nothing")}, 404, "no_such_advice"),
        ({"advice_id": advice(local.store, local.gateway.policy.file,
                              "rubber_stamping")["id"]}, 422, "not_applicable"),
        ({"advice_id": item["id"], "window": "soon"}, 422, "invalid_input"),
        ({"advice_id": item["id"], "extra": 1}, 422, "invalid_input"),
        ({}, 422, "invalid_input"),
    ]
    for body, status, code in cases:
        r = await client.post("/v1/insights/apply", headers=ann, json=body)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), (body, r.text)


async def test_openapi_documents_it(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/openapi.json")).json()
    op = doc["paths"]["/v1/insights/apply"]["post"]
    assert {"200", "401", "403", "404", "409", "422"} <= set(op["responses"])
    assert {"ApplyAdviceIn", "AppliedOut"} <= set(doc["components"]["schemas"])
    advice_schema = doc["components"]["schemas"]["Advice"]
    assert {"id", "changes", "policy_hash"} <= set(advice_schema["properties"])


async def test_a_server_refuses_to_apply_over_a_hand_edit(
        local: History, client: httpx.AsyncClient) -> None:
    """Applying through a server would make it decide with edits nobody applied: refused."""
    path = Path(local.gateway.policy.file)
    edited = path.read_text().replace("timeout: 30m", "timeout: 45m")
    path.write_text(edited)
    ann = bearer(admins(local.store, "ann", "bob")["ann"])
    for kind in ("tighten_gate", "allowlist"):
        item = advice(local.store, path, kind)
        r = await client.post("/v1/insights/apply", headers=ann, json={"advice_id": item["id"]})
        assert r.status_code == 409 and r.json()["error"]["code"] == "policy_changed"
        assert "is not the policy this server runs" in r.json()["error"]["message"]
    assert path.read_text() == edited and not changes(local.store)
    assert local.store.list_requests(agent="interlock") == []
