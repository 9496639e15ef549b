"""Decision memory over HTTP: approve with `remember`, list grants, revoke one."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from grant_support import gateway

from interlock.server.app import create_app
from interlock.server.settings import ServerSettings

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_remember_list_and_revoke(tmp_path: Path) -> None:
    gw = gateway(tmp_path)
    app = create_app(gw, ServerSettings(), background=False)
    secrets = {name: gw.store.create_token(kind=kind, name=name, groups=groups,  # type: ignore[arg-type]
                                           actor="test")[1]
               for name, kind, groups in (("bot", "agent", ()),
                                          ("lena", "reviewer", ("tech-lead",)))}

    def auth(who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {secrets[who]}"}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        action = {"action": "write_file", "args": {"path": "/tmp/a"}}
        rid = (await c.post("/v1/actions", json=action, headers=auth("bot"))).json()["id"]
        bad = await c.post(f"/v1/actions/{rid}/decision", headers=auth("lena"),
                           json={"verdict": "approve", "remember": {"scope": "sometimes"}})
        assert bad.status_code == 422
        r = await c.post(f"/v1/actions/{rid}/decision", headers=auth("lena"),
                         json={"verdict": "approve", "remember": {
                             "scope": "agent_action", "args_pattern": {"path": "/tmp/*"}}})
        assert r.status_code == 200, r.text
        listed = (await c.get("/v1/grants", headers=auth("lena"))).json()["grants"]
        assert [g["reviewer"] for g in listed] == ["lena"] and listed[0]["active"]
        again = (await c.post("/v1/actions", json=action, headers=auth("bot"))).json()
        assert again["decision"] == "allow" and again["state"] == "allowed"
        gid = listed[0]["id"]
        gone = await c.delete(f"/v1/grants/{gid}", headers=auth("lena"))
        assert gone.status_code == 200 and gone.json()["active"] is False
        assert (await c.post(f"/v1/grants/{gid}/revoke", headers=auth("lena"))).status_code == 404
        assert (await c.get("/v1/grants", headers=auth("lena"))).json()["grants"] == []
        assert len((await c.get("/v1/grants", headers=auth("lena"),
                                params={"all": "true"})).json()["grants"]) == 1
        waits = (await c.post("/v1/actions", json=action, headers=auth("bot"))).json()
        assert waits["state"] == "pending"
