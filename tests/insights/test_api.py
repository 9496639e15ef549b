"""`GET /v1/insights` through the real app: reviewers and admins see it, agents do not."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from insights_history import History

from interlock.server.app import create_app
from interlock.server.settings import ServerSettings


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def client(history: History) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(history.gateway, ServerSettings(), background=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://interlock.test") as c:
        yield c


def bearer(history: History, kind: str, name: str) -> dict[str, str]:
    groups = ("on-call",) if kind == "reviewer" else ()
    _, secret = history.store.create_token(kind=kind, name=name, groups=groups,  # type: ignore[arg-type]
                                           actor="test")
    return {"Authorization": f"Bearer {secret}"}


@pytest.mark.anyio
async def test_reviewer_gets_figures_and_advice(history: History,
                                                client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/insights", params={"window": "7d", "by": "action"},
                         headers=bearer(history, "reviewer", "carol"))
    assert r.status_code == 200, r.text
    body = r.json()
    groups = {g["key"]: g for g in body["groups"]}
    assert groups["refund"]["denial_rate"] == 0.4 and body["by"] == "action"
    assert body["window_seconds"] == 7 * 86400
    kinds = {a["kind"] for a in body["advice"]}
    assert kinds == {"allowlist", "rubber_stamping", "tighten_scope", "tighten_gate"}
    assert body["policy_file"] == "policy.yaml"
    allow = next(a for a in body["advice"] if a["kind"] == "allowlist")
    assert allow["diff"].startswith("--- a/policy.yaml")
    assert {"series", "histogram", "reviewers", "overall"} <= set(body)


@pytest.mark.anyio
async def test_admin_allowed_agent_and_anonymous_refused(history: History,
                                                         client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/insights",
                             headers=bearer(history, "admin", "root"))).status_code == 200
    r = await client.get("/v1/insights", headers=bearer(history, "agent", "billing"))
    assert r.status_code == 403 and r.json()["error"]["code"] == "wrong_role"
    r = await client.get("/v1/insights")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"


@pytest.mark.anyio
async def test_bad_parameters_are_422(history: History, client: httpx.AsyncClient) -> None:
    auth = bearer(history, "reviewer", "carol")
    for params in ({"window": "soon"}, {"by": "colour"}):
        r = await client.get("/v1/insights", params=params, headers=auth)
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_input"
