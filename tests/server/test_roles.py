"""Every endpoint of SPEC §5 called by each role: agent (own), agent (other), reviewer allowed,
reviewer not in the group, admin, and no token; what is allowed and what is refused.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
import pytest
from tests.server.conftest import Env

pytestmark = pytest.mark.anyio

ROLES = ("own", "other", "allowed", "outsider", "admin", "none")
WHO = {"own": "bot", "other": "other", "outsider": "outsider", "admin": "boss", "none": None}

Setup = Callable[[Env], Awaitable[str]]


async def pending(env: Env) -> str:
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
    return str((await env.submit(action="iam.grant"))["id"])


async def finished_notified(env: Env) -> str:
    rid = str((await env.submit(action="send_email", recipients=["x@example.com"]))["id"])
    assert (await env.post(f"/v1/actions/{rid}/claim", "bot")).status_code == 200
    r = await env.post(f"/v1/actions/{rid}/outcome", "bot", {"status": "succeeded"})
    assert r.status_code == 200
    return rid


async def batch(env: Env) -> str:
    for i in range(2):
        await env.submit(action="task.run", batch_id="b1", idempotency_key=f"k{i}")
    return "b1"


async def nothing(env: Env) -> str:
    return ""


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    setup: Setup
    expect: dict[str, int]
    body: object = None
    allowed_reviewer: str = "rev"


AGENT_OWN = {"own": 200, "other": 404, "allowed": 403, "outsider": 403, "admin": 403,
             "none": 401}
REVIEWER = {"own": 403, "other": 403, "allowed": 200, "outsider": 403, "admin": 403,
            "none": 401}
REVIEWER_OR_ADMIN = {**REVIEWER, "admin": 200}
ANY_REVIEWER = {"own": 403, "other": 403, "allowed": 200, "outsider": 200, "admin": 200,
                "none": 401}
READ = {"own": 200, "other": 404, "allowed": 200, "outsider": 200, "admin": 200, "none": 401}
EVERYONE = dict.fromkeys(ROLES, 200)

CASES = {
    "submit": Case("POST", "/v1/actions", nothing,
                   {"own": 200, "other": 200, "allowed": 403, "outsider": 403, "admin": 403,
                    "none": 401}, body={"action": "read_file"}),
    "get": Case("GET", "/v1/actions/{id}", pending, READ),
    "wait": Case("GET", "/v1/actions/{id}/wait?timeout=0", pending, AGENT_OWN),
    "events": Case("GET", "/v1/actions/{id}/events", denied, READ),
    "claim": Case("POST", "/v1/actions/{id}/claim", allowed, AGENT_OWN),
    "outcome": Case("POST", "/v1/actions/{id}/outcome", executing, AGENT_OWN,
                    body={"status": "succeeded", "summary": "done"}),
    "cancel": Case("POST", "/v1/actions/{id}/cancel", pending, AGENT_OWN, body={}),
    "decision": Case("POST", "/v1/actions/{id}/decision", pending, REVIEWER,
                     body={"verdict": "approve"}),
    "delegate": Case("POST", "/v1/actions/{id}/delegate", pending, REVIEWER,
                     body={"to": "user:someone"}),
    "resolve": Case("POST", "/v1/actions/{id}/resolve", suggested, REVIEWER_OR_ADMIN,
                    body={"status": "done", "note": "granted by hand"},
                    allowed_reviewer="oncall"),
    "review": Case("POST", "/v1/actions/{id}/review", finished_notified, REVIEWER_OR_ADMIN,
                   body={"verdict": "ok"}, allowed_reviewer="oncall"),
    "feedback": Case("POST", "/v1/actions/{id}/feedback", finished_notified,
                     REVIEWER_OR_ADMIN, body={"rating": "correct"},
                     allowed_reviewer="oncall"),
    "batch": Case("POST", "/v1/batches/{id}/decision", batch,
                  {**ANY_REVIEWER}, body={"verdict": "approve_all"}),
    "queue": Case("GET", "/v1/queue", nothing, ANY_REVIEWER),
    "evaluate": Case("POST", "/v1/evaluate", nothing,
                     {**EVERYONE, "none": 401}, body={"action": "deploy"}),
    "audit": Case("GET", "/v1/audit", nothing, ANY_REVIEWER),
    "verify": Case("GET", "/v1/audit/verify", nothing, ANY_REVIEWER),
    "insights": Case("GET", "/v1/insights", nothing, ANY_REVIEWER),
    "healthz": Case("GET", "/healthz", nothing, EVERYONE),
    "metrics": Case("GET", "/metrics", nothing, EVERYONE),
}


async def call(env: Env, case: Case, role: str, rid: str) -> httpx.Response:
    who = case.allowed_reviewer if role == "allowed" else WHO[role]
    path = case.path.replace("{id}", rid)
    if case.method == "GET":
        return await env.client.get(path, headers=env.auth(who))
    return await env.client.post(path, json=case.body, headers=env.auth(who))


@pytest.mark.parametrize("name", sorted(CASES))
async def test_endpoint_by_role(env: Env, name: str) -> None:
    case = CASES[name]
    got = {}
    for role in ROLES:
        rid = await case.setup(env)
        r = await call(env, case, role, rid)
        got[role] = r.status_code
        if r.status_code >= 400:
            assert set(r.json()) == {"error"}, r.text
            assert set(r.json()["error"]) == {"code", "message"}
    assert got == case.expect


async def test_outsider_batch_decides_nothing(env: Env) -> None:
    await batch(env)
    r = await env.post("/v1/batches/b1/decision", "outsider", {"verdict": "approve_all"})
    assert r.json()["results"] == []
    assert len(r.json()["skipped"]) == 2


async def test_body_naming_another_agent_is_refused(env: Env) -> None:
    r = await env.post("/v1/actions", "bot", {"action": "read_file", "agent": "other"})
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "agent_mismatch"


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


async def test_cookies_are_not_credentials(env: Env) -> None:
    r = await env.client.get("/v1/queue", headers={"Cookie": f"session={env.tokens['rev']}"})
    assert r.status_code == 401


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
