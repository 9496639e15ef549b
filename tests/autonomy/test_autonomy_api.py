"""The autonomy endpoints: `GET /v1/agents`, the gated `POST /v1/agents/{name}/autonomy`,
and the reviewer UI's `/agents` page."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from autonomy_support import gateway

from interlock.server.app import create_app
from interlock.server.settings import ServerSettings

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_set_level_through_the_api_needs_a_second_admin(tmp_path: Path) -> None:
    gw = gateway(tmp_path)
    app = create_app(gw, ServerSettings(), background=False)
    secrets = {name: gw.store.create_token(kind=kind, name=name, groups=groups,  # type: ignore[arg-type]
                                           actor="test")[1]
               for name, kind, groups in (("ada", "admin", ()), ("ben", "admin", ()),
                                          ("lena", "reviewer", ("tech-lead",)))}

    def auth(who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {secrets[who]}"}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        r = await c.post("/v1/agents/bot/autonomy", json={"level": "guided"},
                         headers=auth("lena"))
        assert r.status_code == 403
        r = await c.post("/v1/agents/bot/autonomy", json={"level": "sideways"},
                         headers=auth("ada"))
        assert r.status_code == 422
        r = await c.post("/v1/agents/bot/autonomy",
                         json={"level": "autonomous", "pinned": True, "reason": "proven"},
                         headers=auth("ada"))
        assert r.status_code == 200, r.text
        rid = r.json()["id"]
        assert r.json()["state"] == "pending"
        own = await c.post(f"/v1/actions/{rid}/decision", json={"verdict": "approve"},
                           headers=auth("ada"))
        assert own.status_code == 403 and own.json()["error"]["code"] == "self_approval"
        done = await c.post(f"/v1/actions/{rid}/decision", json={"verdict": "approve"},
                            headers=auth("ben"))
        assert done.status_code == 200 and done.json()["state"] == "succeeded"
        listed = await c.get("/v1/agents", headers=auth("lena"))
        assert listed.status_code == 200
        [bot] = [a for a in listed.json()["agents"] if a["name"] == "bot"]
        assert bot["level"] == "autonomous" and bot["pinned"] is True
        assert all(a["name"] != "interlock" for a in listed.json()["agents"])
        doc = (await c.get("/openapi.json")).json()
        assert "/v1/agents" in doc["paths"] and "/v1/agents/{name}/autonomy" in doc["paths"]
