"""The kill switch over HTTP: an admin pauses one agent or every agent, the agents' new actions
are denied with the reason, pending requests stay, and each pause is lifted on its own."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.server.conftest import Env

from interlock.cli import main
from interlock.store import open_store

pytestmark = pytest.mark.anyio


async def test_pause_every_agent_then_one_then_lift_each(env: Env) -> None:
    waiting = await env.submit(action="task.run")
    assert waiting["state"] == "pending"

    r = await env.post("/v1/pause", "boss", {"reason": "incident 12: stop everything"})
    assert r.status_code == 200, r.text
    assert r.json()["agent"] is None and r.json()["actor"] == "admin:boss"
    for who in ("bot", "other"):
        denied = await env.submit(who, action="read_file")
        assert denied["decision"] == "deny", denied
        assert any("incident 12" in reason for reason in denied["reasons"]), denied
    assert (await env.get(f"/v1/actions/{waiting['id']}", "bot")).json()["state"] == "pending"

    r = await env.post("/v1/pause", "boss", {"agent": "bot", "reason": "bot misbehaves"})
    assert r.status_code == 200, r.text
    listed = (await env.get("/v1/pauses", "rev")).json()["pauses"]
    assert [(p["agent"], p["reason"]) for p in listed] == [
        (None, "incident 12: stop everything"), ("bot", "bot misbehaves")]

    r = await env.post("/v1/unpause", "boss", {})  # everyone's: bot's own pause stays
    assert [p["agent"] for p in r.json()["pauses"]] == ["bot"]
    assert (await env.submit("other", action="read_file"))["decision"] == "allow"
    assert (await env.submit("bot", action="read_file"))["decision"] == "deny"

    r = await env.post("/v1/unpause", "boss", {"agent": "bot"})
    assert r.json()["pauses"] == []
    assert (await env.submit("bot", action="read_file"))["decision"] == "allow"
    events = [(e.event, e.actor) for e in env.store.audit_entries()
              if e.event in ("pause", "unpause")]
    assert events == [("pause", "admin:boss")] * 2 + [("unpause", "admin:boss")] * 2


@pytest.mark.parametrize(("body", "field"), [
    ({}, "reason"),
    ({"reason": ""}, "reason"),
    ({"reason": "   "}, "reason"),
    ({"reason": "x", "agent": "*"}, "agent"),
    ({"reason": "x", "agent": " bot"}, "agent"),
    ({"reason": "x", "agents": ["bot"]}, "agents"),
])
async def test_bad_pause_bodies_are_422_naming_the_field(env: Env, body: dict[str, object],
                                                         field: str) -> None:
    r = await env.post("/v1/pause", "boss", body)
    assert r.status_code == 422, r.text
    assert f"`{field}`" in r.json()["error"]["message"]
    assert (await env.get("/v1/pauses", "boss")).json()["pauses"] == []


def test_the_cli_refuses_what_the_api_refuses(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """`interlock pause --db` checks the agent name and the reason in the store, as the API
    does: `*` or a blank reason is one line on stderr and nothing is paused."""
    db = f"sqlite:///{tmp_path / 'interlock.db'}"
    open_store(db).close()  # as `interlock serve` leaves it
    for args in (["--agent", "*", "--reason", "x"], ["--reason", "   "],
                 ["--agent", " bot", "--reason", "x"]):
        assert main(["pause", *args, "--db", db]) != 0
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and ("`agent`" in err or "`reason`" in err), err
    assert main(["pause", "--agent", "bot", "--reason", "drill", "--db", db]) == 0
    store = open_store(db)
    try:
        assert [(p.agent, p.reason) for p in store.pauses()] == [("bot", "drill")]
    finally:
        store.close()
