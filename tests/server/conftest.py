"""Fixtures for the HTTP API tests: an in-process app on a fresh SQLite store with a fake clock,
a token per role, and an httpx client over ASGITransport.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from interlock.clock import FakeClock
from interlock.gateway import Gateway
from interlock.policy import load_policy
from interlock.server.app import create_app
from interlock.server.settings import ServerSettings
from interlock.store import Store, open_store

POLICY = Path(__file__).with_name("policy.yaml")

#: name -> (kind, groups) of the tokens every test gets.
PEOPLE: dict[str, tuple[str, tuple[str, ...]]] = {
    "bot": ("agent", ()),
    "other": ("agent", ()),
    "rev": ("reviewer", ("tech-lead",)),
    "rev2": ("reviewer", ("tech-lead",)),
    "outsider": ("reviewer", ("marketing",)),
    "fin": ("reviewer", ("finance",)),
    "sec": ("reviewer", ("security-team",)),
    "oncall": ("reviewer", ("on-call",)),
    "em": ("reviewer", ("engineering-manager",)),
    "boss": ("admin", ()),
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Env:
    """One server under test."""

    app: Starlette
    store: Store
    clock: FakeClock
    tokens: dict[str, str]
    client: httpx.AsyncClient

    def auth(self, who: str | None) -> dict[str, str]:
        return {} if who is None else {"Authorization": f"Bearer {self.tokens[who]}"}

    async def post(self, path: str, who: str | None, body: Any = None) -> httpx.Response:
        return await self.client.post(path, json=body, headers=self.auth(who))

    async def get(self, path: str, who: str | None, **params: Any) -> httpx.Response:
        return await self.client.get(path, params=params, headers=self.auth(who))

    async def submit(self, who: str = "bot", **action: Any) -> dict[str, Any]:
        r = await self.post("/v1/actions", who, action)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    async def decide(self, rid: str, who: str, verdict: str = "approve",
                     **extra: Any) -> httpx.Response:
        return await self.post(f"/v1/actions/{rid}/decision", who, {"verdict": verdict, **extra})

    def sweep(self) -> list[str]:
        ids: list[str] = self.app.state.sweeper.once()
        return ids


def make_tokens(store: Store) -> dict[str, str]:
    tokens = {}
    for name, (kind, groups) in PEOPLE.items():
        _, secret = store.create_token(kind=kind, name=name, groups=groups,  # type: ignore[arg-type]
                                       actor="test")
        tokens[name] = secret
    return tokens


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'interlock.db'}", clock=clock)
    yield s
    s.close()


@pytest.fixture
async def env(store: Store, clock: FakeClock) -> AsyncIterator[Env]:
    gateway = Gateway(load_policy(POLICY), store)
    app = create_app(gateway, ServerSettings(max_body=64 * 1024), background=False)
    tokens = make_tokens(store)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://interlock.test") as c:
        yield Env(app=app, store=store, clock=clock, tokens=tokens, client=c)
