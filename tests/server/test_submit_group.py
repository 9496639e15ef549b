"""Submissions on SQLite run on the event loop and share a commit (`Store.run_grouped`): each
is answered only once its commit is durable, a failed commit is a 503 that loses nothing
stored before, and many at once are each stored once, audited and chained."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from tests.server.conftest import Env
from tests.store.store_support import HeldCommits

from interlock.store import State

pytestmark = pytest.mark.anyio


async def test_a_submission_is_answered_only_after_its_commit(env: Env) -> None:
    await env.submit(action="read_rows")  # the token is known; the writer connection open
    held = env.store._committer = HeldCommits()
    answer = asyncio.ensure_future(env.post("/v1/actions", "bot", {"action": "read_rows"}))
    await asyncio.sleep(0.2)
    assert not answer.done()
    held.go.set()
    r = await answer
    assert r.status_code == 200, r.text
    assert env.store.get(r.json()["id"]).state is State.ALLOWED


async def test_a_failed_commit_is_a_503_and_keeps_what_was_stored(env: Env) -> None:
    before = await env.submit(action="read_rows")
    held = env.store._committer = HeldCommits(fail=sqlite3.OperationalError("disk I/O error"))
    held.go.set()
    answers = await asyncio.gather(*(
        env.post("/v1/actions", "bot", {"action": "read_rows", "idempotency_key": f"k{i}"})
        for i in range(3)))

    for r in answers:
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "store_unavailable"
    for i in range(3):
        assert env.store.by_idempotency_key("bot", f"k{i}") is None
    assert env.store.get(before["id"]).state is State.ALLOWED

    env.store._committer = None  # the disk is back: a retry with the same key is stored once
    again = await env.post("/v1/actions", "bot", {"action": "read_rows", "idempotency_key": "k0"})
    assert again.status_code == 200, again.text
    assert env.store.verify().ok


async def test_many_submissions_at_once_are_each_stored_once(env: Env) -> None:
    answers = await asyncio.gather(*(
        env.post("/v1/actions", "bot", {"action": "read_rows", "args": {"n": i}})
        for i in range(40)))

    assert [r.status_code for r in answers] == [200] * 40
    ids = [r.json()["id"] for r in answers]
    assert len(set(ids)) == 40
    for i, rid in enumerate(ids):
        stored = env.store.get(rid)
        assert stored.state is State.ALLOWED and stored.action["args"] == {"n": i}
    submitted = [e.request_id for e in env.store.audit_entries() if e.event == "submitted"]
    assert sorted(submitted) == sorted(ids)
    assert env.store.verify().ok


async def test_waiters_hear_of_an_outcome_only_after_its_commit(env: Env) -> None:
    """Claims, outcomes and cancels share the loop's group too; the waiters of the request
    are woken by its commit, never by the write alone."""
    sub = await env.post("/v1/actions", "bot", {"action": "read_rows"})
    rid = sub.json()["id"]
    claimed = await env.post(f"/v1/actions/{rid}/claim", "bot")
    assert claimed.status_code == 200, claimed.text
    wake = env.app.state.hub.subscribe(rid)
    held = env.store._committer = HeldCommits()
    answer = asyncio.ensure_future(
        env.post(f"/v1/actions/{rid}/outcome", "bot", {"status": "succeeded"}))
    await asyncio.sleep(0.2)
    assert not answer.done() and not wake.is_set()
    held.go.set()
    r = await answer
    assert r.status_code == 200, r.text
    assert wake.is_set() and wake.request is not None
    assert wake.request.state is State.SUCCEEDED
    assert env.store.get(rid).state is State.SUCCEEDED
