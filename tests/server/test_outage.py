"""A database that goes away under a running server: the calls caught by it get a 503 that
says so (which the SDK retries), never a 500; the next calls, on new connections, succeed;
nothing stored is lost."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from tests.server.conftest import POLICY, make_tokens
from tests.server.servers import pg_schema, pg_terminate

from interlock.gateway import Gateway
from interlock.policy import load_policy
from interlock.server.app import create_app
from interlock.server.settings import ServerSettings
from interlock.store import Store, open_store

pytestmark = pytest.mark.postgres


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Outage:
    """The server under test, and a way to end its database connections from the server's
    side, as a PostgreSQL restart or failover does."""

    def __init__(self, store: Store, client: httpx.AsyncClient, tokens: dict[str, str],
                 name: str) -> None:
        self.store, self.client, self.tokens, self.name = store, client, tokens, name

    def cut(self) -> int:
        """Terminate every connection of this server; returns how many there were."""
        return pg_terminate(self.name)

    async def submit(self, key: str) -> httpx.Response:
        return await self.client.post(
            "/v1/actions", json={"action": "read_rows", "idempotency_key": key},
            headers={"Authorization": f"Bearer {self.tokens['bot']}"})

    async def read(self, rid: str) -> httpx.Response:
        return await self.client.get(
            f"/v1/actions/{rid}", headers={"Authorization": f"Bearer {self.tokens['bot']}"})


@pytest.fixture
async def outage() -> AsyncIterator[Outage]:
    name = f"il_outage_{uuid.uuid4().hex[:8]}"
    with pg_schema() as url:
        store = open_store(f"{url}&application_name={name}")
        try:
            app = create_app(Gateway(load_policy(POLICY), store), ServerSettings(),
                             background=False)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport,
                                         base_url="http://interlock.test") as client:
                yield Outage(store, client, make_tokens(store), name)
        finally:
            store.close()


@pytest.mark.anyio
async def test_a_lost_connection_is_a_503_and_the_next_call_works(outage: Outage) -> None:
    first = await outage.submit("k1")
    assert first.status_code == 200, first.text
    rid = first.json()["id"]
    assert (await outage.read(rid)).status_code == 200  # a read connection is pooled too

    assert outage.cut() >= 2  # the pooled read connection and the write connection
    write = await outage.submit("k2")
    read = await outage.read(rid)

    for r in (write, read):
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"] == "1"
        error = r.json()["error"]
        assert error["code"] == "store_unavailable"
        assert "cannot be used right now" in error["message"]
    again = await outage.submit("k2")  # the SDK's retry: same key
    assert again.status_code == 200, again.text
    assert (await outage.read(rid)).status_code == 200
    stored = {r.idempotency_key for r in outage.store.list_requests(agent="bot")}
    assert stored == {"k1", "k2"}
    assert outage.store.verify().ok
