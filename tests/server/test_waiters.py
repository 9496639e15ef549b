"""The hub: what a change carries to waiters (the committed request, in-process and over
NOTIFY), when a waiter may answer with it instead of reading, and what the audit tail replays.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading

import pytest
from tests.server.conftest import POLICY, Env
from tests.server.servers import pg_schema

from interlock.gateway import Gateway, Principal
from interlock.policy import load_policy
from interlock.server.waiters import (
    MAX_PAYLOAD,
    PAYLOAD_VERSION,
    Hub,
    decode,
    encode,
    payload,
)
from interlock.store import Request, State, Store, open_store

pytestmark = pytest.mark.anyio

BOT = Principal(role="agent", name="bot")
LEAD = Principal(role="reviewer", name="lead", groups=("tech-lead",))


def counting_reads(env: Env) -> list[str]:
    """Ids the API reads for agents (the waiters) through the gateway from now on."""
    gateway = env.app.state.gateway
    reads: list[str] = []
    get = gateway.get

    def counted(rid: str, who: Principal) -> Request:
        if who.role == "agent":
            reads.append(rid)
        return get(rid, who)  # type: ignore[no-any-return]

    gateway.get = counted
    return reads


async def parked(env: Env, count: int = 1) -> None:
    for _ in range(200):
        if env.app.state.hub.waiting >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the waiter did not park")


async def test_payload_round_trips_the_committed_request(env: Env) -> None:
    plain = (await env.submit(action="task.run", args={"n": 1, "s": "é"}))["id"]
    await env.decide(plain, "rev")
    staged = (await env.submit(action="deploy", environment="production",
                               checkpoint={"step": 3}))["id"]
    for rid in (plain, staged):
        request = env.store.get(rid)
        assert decode(encode(request, "proc-a")) == ("proc-a", request)
        assert json.loads(payload(request, "x"))["v"] == PAYLOAD_VERSION


async def test_payload_falls_back_to_the_id(env: Env) -> None:
    rid = (await env.submit(action="task.run", args={"blob": "x" * MAX_PAYLOAD}))["id"]
    request = env.store.get(rid)
    assert payload(request, "x") == rid
    assert payload(rid, "x") == rid
    assert decode(rid) == ("", rid)  # a bare id, e.g. from an older server
    newer = json.loads(encode(env.store.get(rid), "b"))
    newer["v"] = PAYLOAD_VERSION + 1
    assert decode(json.dumps(newer)) == ("b", rid)
    broken = json.loads(encode(env.store.get(rid), "b"))
    del broken["request"]["state"]
    assert decode(json.dumps(broken)) == ("b", rid)


async def test_waiter_answers_with_the_carried_request_without_reading(env: Env) -> None:
    rid = (await env.submit(action="task.run"))["id"]
    reads = counting_reads(env)
    waiter = asyncio.create_task(env.get(f"/v1/actions/{rid}/wait", "bot", timeout=30))
    await parked(env)
    await env.decide(rid, "rev")
    body = (await asyncio.wait_for(waiter, 5)).json()
    assert (body["state"], body["changed"]) == ("approved", True)
    assert body["version"] == env.store.get(rid).version
    assert reads.count(rid) == 1  # the read before parking; the answer came with the wake


async def test_a_stale_or_pending_carried_request_is_read_back(env: Env) -> None:
    rid = (await env.submit(action="task.run"))["id"]
    read = env.store.get(rid)
    reads = counting_reads(env)
    waiter = asyncio.create_task(env.get(f"/v1/actions/{rid}/wait", "bot", timeout=30))
    await parked(env)
    hub: Hub = env.app.state.hub
    # not newer than what the waiter read: not trusted, read back, still pending
    hub.changed([dataclasses.replace(read, state=State.APPROVED)])
    await parked(env)
    # newer but pending (a vote below quorum, a delegation): read back too
    hub.changed([dataclasses.replace(read, version=read.version + 1)])
    await parked(env)
    assert not waiter.done() and reads.count(rid) == 3
    await env.decide(rid, "rev")
    assert (await asyncio.wait_for(waiter, 5)).json()["state"] == "approved"


async def test_a_change_by_id_is_read_back(env: Env) -> None:
    rid = (await env.submit(action="task.run"))["id"]
    reads = counting_reads(env)
    waiter = asyncio.create_task(env.get(f"/v1/actions/{rid}/wait", "bot", timeout=30))
    await parked(env)
    env.clock.advance(11 * 60)
    thread = threading.Thread(target=env.sweep)  # the sweeper announces ids
    thread.start()
    assert (await asyncio.wait_for(waiter, 5)).json()["state"] == "expired"
    thread.join()
    assert reads.count(rid) == 2


async def test_sse_still_sees_every_change_in_order(env: Env) -> None:
    rid = (await env.submit(action="db.delete_rows"))["id"]
    seen: list[tuple[str, int]] = []

    async def read() -> None:
        async with env.client.stream("GET", f"/v1/actions/{rid}/events",
                                     headers=env.auth("bot")) as r:
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    data = json.loads(line[6:])
                    seen.append((data["state"], data["version"]))

    reader = asyncio.create_task(read())
    await parked(env)
    await env.decide(rid, "rev")  # below quorum: pending, new version
    await parked(env)
    await env.decide(rid, "rev2", "deny", note="no")
    await asyncio.wait_for(reader, 5)
    assert [s for s, _ in seen] == ["pending", "pending", "denied"]
    assert [v for _, v in seen] == sorted({v for _, v in seen})


async def test_audit_tail_does_not_replay_changes_from_before_anyone_waited(
    store: Store,
) -> None:
    gateway = Gateway(load_policy(POLICY), store)
    hub = Hub(store)
    hub.start(asyncio.get_running_loop())
    try:
        rid = gateway.submit({"action": "task.run"}, BOT).request.id  # nobody waits yet
        await asyncio.sleep(0.6)  # the tail ticks every 0.25 s
        wake = hub.subscribe(rid)
        try:
            await asyncio.sleep(0.6)
            assert not wake.is_set()
            await asyncio.to_thread(gateway.decide, rid, LEAD, "approve")  # unannounced
            await asyncio.wait_for(wake.wait(), 5)  # heard from the tail, by id
            assert wake.request is None
        finally:
            hub.unsubscribe(rid, wake)
    finally:
        hub.stop()


@pytest.mark.postgres
async def test_notify_carries_the_committed_request_to_another_process() -> None:
    with pg_schema() as url:
        store_a, store_b = open_store(url), open_store(url)
        a, b = Hub(store_a), Hub(store_b)
        loop = asyncio.get_running_loop()
        a.start(loop)
        b.start(loop)
        try:
            gateway = Gateway(load_policy(POLICY), store_b)
            rid = gateway.submit({"action": "task.run"}, BOT).request.id
            wake = a.subscribe(rid)
            own = b.subscribe(rid)
            try:
                await asyncio.sleep(0.2)  # the listeners are up
                decided = await asyncio.to_thread(gateway.decide, rid, LEAD, "approve")
                await asyncio.to_thread(b.changed, [decided])
                await asyncio.wait_for(wake.wait(), 5)
                assert wake.request == decided == store_a.get(rid)
                assert own.request is decided  # B's own waiters, woken in-process
            finally:
                a.unsubscribe(rid, wake)
                b.unsubscribe(rid, own)
        finally:
            a.stop()
            b.stop()
            store_a.close()
            store_b.close()
