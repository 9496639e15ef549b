"""The API over a real socket against `interlock serve` run as a subprocess, with the CLI's
token, pause and gates-on-the-gate commands; and two servers sharing one PostgreSQL.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.server.servers import Server, cli, pg_schema, serving

TIGHT = """version: 1
defaults: {approvers: [tech-lead]}
rules:
  - name: everything-waits
    match: {action: "*"}
    decision: require_approval
    approvers: [tech-lead]
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path, str]]:
    cwd = tmp_path_factory.mktemp("serve")
    with serving(cwd) as server:
        out = server.out.read_text()
        link = re.search(r"(http://\S+)/login\?token=(\S+)", out)
        assert link, out
        yield server, cwd, link.group(2)


def h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def token(cwd: Path, *args: str) -> str:
    out = cli("token", "create", *args, cwd=cwd).stdout
    assert out.count("\n") == 1, out  # the token alone on stdout
    return out.strip()


def reviewer(served: tuple[Server, Path, str], name: str, group: str) -> str:
    """A reviewer token in an approver group: asked for, approved by a second admin, issued."""
    server, cwd, admin = served
    return gated_reviewer(cwd, server.url, admin, name, group)


def gated_reviewer(cwd: Path, url: str, admin: str, name: str, group: str,
                   *extra: str) -> str:
    done = cli("token", "create", "--reviewer", name, "--groups", group, "--as", "ops",
               *extra, cwd=cwd, check=False)
    found = re.search(r"request (\w+)", done.stderr)
    assert done.returncode == 3 and found, done.stderr
    r = httpx.post(f"{url}/v1/actions/{found.group(1)}/decision", headers=h(admin),
                   json={"verdict": "approve"})
    assert r.json()["state"] == "approved", r.text
    return cli("token", "create", "--request", found.group(1), *extra,
               cwd=cwd).stdout.strip()


def test_a_token_group_is_gated_when_no_policy_says_which_groups_approve(
    tmp_path: Path,
) -> None:
    db = f"sqlite:///{tmp_path / 'bare.db'}"
    cli("db", "upgrade", "--db", db, cwd=tmp_path)
    token(tmp_path, "--admin", "boss", "--db", db)
    assert not (tmp_path / "interlock.yaml").exists()
    done = cli("token", "create", "--reviewer", "eve", "--groups", "anything", "--as", "ops",
               "--db", db, cwd=tmp_path, check=False)
    assert done.returncode == 3, done.stderr  # asked for, not issued
    assert "every group counts as an approver group" in done.stderr
    assert re.search(r"request \w+: a reviewer token in approver group\(s\) anything",
                     done.stderr), done.stderr
    assert done.stdout == ""
    plain = cli("token", "create", "--reviewer", "ann", "--db", db, cwd=tmp_path)
    assert plain.stdout.strip()  # no groups, nothing to gate


def test_first_start(served: tuple[Server, Path, str]) -> None:
    server, cwd, admin = served
    assert (cwd / "interlock.yaml").exists()  # the starter policy, written on first start
    assert (cwd / "interlock.db").exists()
    r = httpx.get(server.url + "/v1/queue", headers=h(admin))
    assert r.status_code == 200
    assert admin not in server.err.read_text()


def test_submit_wait_decide_claim(served: tuple[Server, Path, str]) -> None:
    server, cwd, _ = served
    bot = token(cwd, "--agent", "ops-bot")
    lead = reviewer(served, "lee", "on-call")
    with httpx.Client(base_url=server.url, timeout=30) as c:
        r = c.post("/v1/actions", headers=h(bot), json={
            "action": "send_email", "recipients": ["someone@else.org"], "reason": "reply"})
        sub = r.json()
        assert sub["state"] == "pending", sub
        result: dict[str, Any] = {}

        def wait() -> None:
            result["r"] = c.get(f"/v1/actions/{sub['id']}/wait", headers=h(bot),
                                params={"timeout": 30})

        waiter = threading.Thread(target=wait)
        waiter.start()
        time.sleep(0.3)
        started = time.monotonic()
        r = c.post(f"/v1/actions/{sub['id']}/decision", headers=h(lead),
                   json={"verdict": "approve", "version": sub["version"]})
        assert r.json()["state"] == "approved"
        waiter.join(10)
        assert time.monotonic() - started < 2
        assert result["r"].json()["state"] == "approved"
        assert c.post(f"/v1/actions/{sub['id']}/claim", headers=h(bot)).status_code == 200


def test_sse_live(served: tuple[Server, Path, str]) -> None:
    server, cwd, _ = served
    bot = token(cwd, "--agent", "sse-bot")
    lead = reviewer(served, "sam", "on-call")
    with httpx.Client(base_url=server.url, timeout=30) as c:
        sub = c.post("/v1/actions", headers=h(bot), json={
            "action": "send_email", "recipients": ["x@else.org"]}).json()
        with c.stream("GET", f"/v1/actions/{sub['id']}/events", headers=h(bot)) as stream:
            lines = stream.iter_lines()
            states = []
            for line in lines:
                if line.startswith("data: "):
                    states.append(json.loads(line[6:])["state"])
                    break
            assert states == ["pending"]
            c.post(f"/v1/actions/{sub['id']}/decision", headers=h(lead),
                   json={"verdict": "deny", "note": "not to that address"})
            for line in lines:
                if line.startswith("data: "):
                    states.append(json.loads(line[6:])["state"])
            assert states == ["pending", "denied"]


def test_token_list_revoke_and_pause(served: tuple[Server, Path, str]) -> None:
    server, cwd, _ = served
    secret = token(cwd, "--agent", "list-bot", "--environment", "staging", "--expires", "1d")
    listing = cli("token", "list", cwd=cwd).stdout
    assert "list-bot" in listing and secret not in listing and "environment=staging" in listing
    tid = next(line.split()[0] for line in listing.splitlines() if "list-bot" in line)
    cli("pause", "--agent", "list-bot", "--reason", "incident 7", cwd=cwd)
    r = httpx.post(server.url + "/v1/actions", headers=h(secret), json={"action": "read_x"})
    assert r.json()["decision"] == "deny" and "incident 7" in json.dumps(r.json())
    cli("unpause", "--agent", "list-bot", cwd=cwd)
    cli("token", "revoke", tid, cwd=cwd)
    time.sleep(2.1)  # the server trusts a looked-up token for two seconds
    r = httpx.post(server.url + "/v1/actions", headers=h(secret), json={"action": "read_x"})
    assert r.status_code == 401
    bad = cli("token", "create", "--agent", "x", "--reviewer", "y", cwd=cwd, check=False)
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1


def test_pause_through_the_server(served: tuple[Server, Path, str]) -> None:
    """An admin without the database throws the kill switch over HTTP."""
    server, cwd, admin = served
    bot = token(cwd, "--agent", "remote-bot")
    remote = ("--server", server.url, "--token", admin)
    cli("pause", "--agent", "remote-bot", "--reason", "incident 9", *remote, cwd=cwd)
    r = httpx.post(server.url + "/v1/actions", headers=h(bot), json={"action": "read_x"})
    assert r.json()["decision"] == "deny" and "incident 9" in json.dumps(r.json())
    listed = httpx.get(server.url + "/v1/pauses", headers=h(admin)).json()["pauses"]
    assert [(p["agent"], p["reason"], p["actor"]) for p in listed] == [
        ("remote-bot", "incident 9", "admin:admin")]
    done = cli("unpause", "--agent", "remote-bot", *remote, cwd=cwd)
    assert "unpaused agent remote-bot" in done.stderr and "still paused" not in done.stderr
    r = httpx.post(server.url + "/v1/actions", headers=h(bot), json={"action": "read_x"})
    assert r.json()["decision"] == "allow", r.text
    refused = cli("pause", "--reason", "x", "--server", server.url, "--token", bot,
                  cwd=cwd, check=False)
    assert refused.returncode != 0 and "admin" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_gate_on_the_gate(served: tuple[Server, Path, str]) -> None:
    server, cwd, admin = served
    second = token(cwd, "--admin", "second")
    done = cli("token", "create", "--reviewer", "newlead", "--groups", "tech-lead",
               "--as", "admin", cwd=cwd, check=False)
    assert done.returncode == 3 and done.stdout == ""
    rid = re.search(r"request (\w+)", done.stderr)
    assert rid, done.stderr
    rid_ = rid.group(1)
    # the admin who asked may not approve it; a second admin may
    r = httpx.post(f"{server.url}/v1/actions/{rid_}/decision", headers=h(admin),
                   json={"verdict": "approve"})
    assert (r.status_code, r.json()["error"]["code"]) == (403, "self_approval")
    r = httpx.post(f"{server.url}/v1/actions/{rid_}/decision", headers=h(second),
                   json={"verdict": "approve"})
    assert r.json()["state"] == "approved", r.text
    lead = cli("token", "create", "--request", rid_, cwd=cwd).stdout.strip()
    assert httpx.get(server.url + "/v1/queue", headers=h(lead)).status_code == 200
    again = cli("token", "create", "--request", rid_, cwd=cwd, check=False)
    assert again.returncode != 0  # claimed once: the token is never issued twice


def test_serve_errors(tmp_path: Path) -> None:
    done = cli("serve", "--policy", "missing.yaml", "--port", "1", cwd=tmp_path, check=False)
    assert done.returncode == 1
    assert done.stderr.strip() == "missing.yaml:1:1: no such file"
    assert not (tmp_path / "interlock.yaml").exists()


@pytest.mark.postgres
def test_two_servers_on_postgres(tmp_path: Path) -> None:
    (tmp_path / "tight.yaml").write_text(TIGHT)
    with pg_schema() as db, serving(tmp_path, "--db", db, "--policy", "tight.yaml") as a, \
                serving(tmp_path, "--db", db, "--policy", "tight.yaml") as b:
        bot = token(tmp_path, "--agent", "pg-bot", "--db", db)
        boss = token(tmp_path, "--admin", "boss", "--db", db)
        lead = gated_reviewer(tmp_path, a.url, boss, "tl", "tech-lead", "--db", db,
                              "--policy", "tight.yaml")
        (tmp_path / "other.yaml").write_text(TIGHT.replace("everything-waits", "changed"))
        refused = Server(tmp_path, "--db", db, "--policy", "other.yaml")
        refused.proc.wait(30)
        assert refused.proc.returncode == 1
        assert "runs policy" in refused.err.read_text()
        sub = httpx.post(a.url + "/v1/actions", headers=h(bot),
                         json={"action": "restart"}).json()
        assert sub["state"] == "pending"
        result: dict[str, Any] = {}

        def wait() -> None:
            result["r"] = httpx.get(f"{a.url}/v1/actions/{sub['id']}/wait",
                                    headers=h(bot), params={"timeout": 30}, timeout=40)

        waiter = threading.Thread(target=wait)
        waiter.start()
        time.sleep(0.5)
        started = time.monotonic()
        r = httpx.post(f"{b.url}/v1/actions/{sub['id']}/decision", headers=h(lead),
                       json={"verdict": "approve"})
        assert r.json()["state"] == "approved", r.text
        waiter.join(10)
        # woken by NOTIFY from B, not by A's 30 s timeout
        assert time.monotonic() - started < 2.0
        assert result["r"].json()["state"] == "approved"
        assert result["r"].json()["changed"] is True
