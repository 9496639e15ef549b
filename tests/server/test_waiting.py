"""Waiting agents: `/wait` returns as soon as a decision commits, SSE streams state changes,
the sweeper wakes waiters, and hundreds wait at once without a thread each.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest
from tests.server.conftest import Env

pytestmark = pytest.mark.anyio


async def test_wait_returns_as_soon_as_decided(env: Env) -> None:
    rid = (await env.submit(action="task.run"))["id"]
    started = time.monotonic()
    waiter = asyncio.create_task(env.get(f"/v1/actions/{rid}/wait", "bot", timeout=30))
    await asyncio.sleep(0.2)
    assert not waiter.done()
    await env.decide(rid, "rev")
    r = await asyncio.wait_for(waiter, 5)
    assert time.monotonic() - started < 5
    assert r.json()["state"] == "approved" and r.json()["changed"] is True
    assert env.app.state.hub.waiting == 0


async def test_wait_times_out_unchanged(env: Env) -> None:
    rid = (await env.submit(action="task.run"))["id"]
    r = await env.get(f"/v1/actions/{rid}/wait", "bot", timeout=0.2)
    assert (r.json()["state"], r.json()["changed"]) == ("pending", False)
    assert env.app.state.hub.waiting == 0
    done = (await env.submit(action="read_file"))["id"]
    r = await env.get(f"/v1/actions/{done}/wait", "bot", timeout=30)
    assert (r.json()["state"], r.json()["changed"]) == ("allowed", True)


async def test_a_vote_below_quorum_keeps_waiting(env: Env) -> None:
    rid = (await env.submit(action="db.delete_rows"))["id"]
    waiter = asyncio.create_task(env.get(f"/v1/actions/{rid}/wait", "bot", timeout=30))
    await asyncio.sleep(0.1)
    await env.decide(rid, "rev")
    await asyncio.sleep(0.2)
    assert not waiter.done()
    await env.decide(rid, "rev2", "deny", note="no")
    assert (await asyncio.wait_for(waiter, 5)).json()["state"] == "denied"


async def test_sweeper_wakes_waiters(env: Env) -> None:
    rid = (await env.submit(action="task.run"))["id"]
    waiter = asyncio.create_task(env.get(f"/v1/actions/{rid}/wait", "bot", timeout=30))
    await asyncio.sleep(0.1)
    env.clock.advance(11 * 60)
    # the sweeper runs in its own thread in the server
    thread = threading.Thread(target=env.sweep)
    thread.start()
    r = await asyncio.wait_for(waiter, 5)
    thread.join()
    assert r.json()["state"] == "expired"


async def test_many_waiters_at_once(env: Env) -> None:
    ids = [(await env.submit(action="task.run", batch_id="many", idempotency_key=str(i),
                             agent=None))["id"] for i in range(8)]
    waiters = [asyncio.create_task(env.get(f"/v1/actions/{rid}/wait", "bot", timeout=30))
               for rid in ids for _ in range(25)]
    await asyncio.sleep(0.3)
    before = threading.active_count()
    assert not any(w.done() for w in waiters)
    r = await env.post("/v1/batches/many/decision", "rev", {"verdict": "approve_all"})
    assert len(r.json()["results"]) == 8
    done = await asyncio.wait_for(asyncio.gather(*waiters), 10)
    assert {d.json()["state"] for d in done} == {"approved"}
    assert before < 60


async def test_sse_streams_state_changes(env: Env) -> None:
    rid = (await env.submit(action="task.run"))["id"]
    seen: list[dict[str, object]] = []

    async def read() -> None:
        async with env.client.stream("GET", f"/v1/actions/{rid}/events",
                                     headers=env.auth("bot")) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    seen.append(json.loads(line[6:]))

    # ASGITransport hands over the body when the stream ends; the socket suite reads it live.
    reader = asyncio.create_task(read())
    await asyncio.sleep(0.3)
    await env.decide(rid, "rev")
    await env.post(f"/v1/actions/{rid}/claim", "bot")
    await env.post(f"/v1/actions/{rid}/outcome", "bot", {"status": "succeeded"})
    await asyncio.wait_for(reader, 5)  # the stream ends with the final state
    assert next(s["state"] for s in seen) == "pending"
    assert [s["state"] for s in seen][-1] == "succeeded"
    versions = [s["version"] for s in seen]
    assert versions == sorted(set(versions))  # one event per change, in order


async def test_sse_for_other_agents_request_is_404(env: Env) -> None:
    rid = (await env.submit(action="task.run"))["id"]
    r = await env.get(f"/v1/actions/{rid}/events", "other")
    assert r.status_code == 404
