"""`interlock queue|approve|deny` against a real server on a loopback port, with a temp SQLite DB.

The server runs under uvicorn in a thread; the CLI runs in-process through `main`, and once
in a subprocess on a pseudo-terminal to type the confirmation phrase as a person would.
"""

from __future__ import annotations

import os
import pty
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from interlock.cli import main
from interlock.gateway import Gateway
from interlock.policy import load_policy
from interlock.server.app import create_app
from interlock.server.settings import ServerSettings
from interlock.store import open_store

POLICY = """\
version: 1
defaults: {approvers: [on-call]}
rules:
  - name: production-changes
    match: {environment: production, action: deploy}
    decision: require_approval
    approvers: [tech-lead]
    confirm: typed
  - name: everything-else-waits
    match: {action: "db.*"}
    decision: require_approval
    approvers: [tech-lead]
"""

DEPLOY = {
    "action": "deploy", "environment": "production", "args": {"service": "checkout"},
    "reason": "ship the timeout fix", "confidence": 0.9,
    "context": {"plan_step": 2, "plan_total": 3},
    "preview": {"kind": "diff", "content": "-image: checkout:1.0\n+image: checkout:1.1\n"},
}
UPDATE = {
    "action": "db.update_rows", "args": {"table": "users", "limit": 10},
    "affected_records": 10, "reason": "fix the typo in ten names",
    "preview": {"kind": "sql", "content": "UPDATE users SET name = trim(name) LIMIT 10;"},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    url: str
    agent: str
    reviewer: str

    def submit(self, action: dict[str, Any]) -> str:
        r = httpx.post(f"{self.url}/v1/actions", json=action,
                       headers={"Authorization": f"Bearer {self.agent}"})
        assert r.status_code == 200, r.text
        assert r.json()["state"] == "pending", r.text
        return str(r.json()["id"])

    def get(self, rid: str) -> dict[str, Any]:
        r = httpx.get(f"{self.url}/v1/actions/{rid}",
                      headers={"Authorization": f"Bearer {self.reviewer}"})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("review")
    (tmp / "policy.yaml").write_text(POLICY)
    store = open_store(f"sqlite:///{tmp / 'db.sqlite'}")
    _, agent = store.create_token(kind="agent", name="ops-bot", actor="test")
    _, reviewer = store.create_token(kind="reviewer", name="lee", groups=["tech-lead"],
                                     actor="test")
    app = create_app(Gateway(load_policy(tmp / "policy.yaml"), store), ServerSettings())
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield Served(url=f"http://127.0.0.1:{port}", agent=agent, reviewer=reviewer)
    finally:
        server.should_exit = True
        thread.join(10)
        store.close()


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INTERLOCK_SERVER", raising=False)
    monkeypatch.delenv("INTERLOCK_TOKEN", raising=False)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    assert err.strip(), "expected an error message"
    assert err.strip().count("\n") == 0, err
    assert "Traceback" not in err
    return err.strip()


def on(s: Served) -> list[str]:
    return ["--server", s.url, "--token", s.reviewer]


def test_help_on_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("queue", "approve", "deny"):
        code, out, _ = run(capsys, command, "--help")
        assert code == 0
        assert "--server" in out and "--token" in out and "INTERLOCK_TOKEN" in out


def test_queue_lists_pending(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    rid = served.submit(DEPLOY)
    code, out, err = run(capsys, "queue", *on(served))
    assert code == 0, err
    assert rid in out
    for column in ("risk", "action", "agent", "age", "deadline", "summary"):
        assert column in out
    assert "ops-bot wants to run deploy in production" in out


def test_queue_from_the_environment(served: Served, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    rid = served.submit(UPDATE)
    monkeypatch.setenv("INTERLOCK_SERVER", served.url)
    monkeypatch.setenv("INTERLOCK_TOKEN", served.reviewer)
    code, out, err = run(capsys, "queue")
    assert code == 0, err
    assert rid in out


def test_approve_with_confirmation(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    rid = served.submit(DEPLOY)
    code, out, err = run(capsys, "approve", rid, "--note", "go", "--confirmation",
                         "deploy production", *on(served))
    assert code == 0, err
    assert "rule production-changes" in out  # why it was gated
    assert "ship the timeout fix" in out and "step 2 of 3" in out  # the agent's case
    assert "+image: checkout:1.1" in out  # the preview
    assert f"request {rid} is now approved" in out
    got = served.get(rid)
    assert got["state"] == "approved"
    assert got["votes"][0]["note"] == "go"


def test_wrong_phrase_is_refused(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    rid = served.submit(DEPLOY)
    code, _, err = run(capsys, "approve", rid, "--confirmation", "deploy staging",
                       *on(served))
    assert code == 1
    assert "does not match `deploy production`" in one_line(err)
    assert served.get(rid)["state"] == "pending"


def test_no_terminal_asks_for_the_flag(served: Served,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    rid = served.submit(DEPLOY)
    code, _, err = run(capsys, "approve", rid, *on(served))
    assert code == 1
    assert "--confirmation" in one_line(err)
    assert served.get(rid)["state"] == "pending"


def test_phrase_typed_on_a_terminal(served: Served) -> None:
    rid = served.submit(DEPLOY)
    primary, secondary = pty.openpty()
    env = {**os.environ, "INTERLOCK_SERVER": served.url, "INTERLOCK_TOKEN": served.reviewer}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from interlock.cli import entrypoint; entrypoint()",
         "approve", rid], stdin=secondary, stdout=secondary, stderr=subprocess.PIPE, env=env)
    os.close(secondary)
    seen = b""
    try:
        deadline = time.monotonic() + 30
        while b"to approve:" not in seen:
            assert time.monotonic() < deadline, seen.decode(errors="replace")
            ready, _, _ = select.select([primary], [], [], 0.5)
            if ready:
                seen += os.read(primary, 65536)
        assert b"deploy production" in seen
        os.write(primary, b"deploy production\n")
        assert proc.wait(timeout=30) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
        os.close(primary)
    assert served.get(rid)["state"] == "approved"


def test_approve_with_edited_args(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    rid = served.submit(UPDATE)
    code, out, err = run(capsys, "approve", rid, "--args",
                         '{"table": "users", "limit": 5}', *on(served))
    assert code == 0, err
    assert "approved" in out
    got = served.get(rid)
    assert got["state"] == "approved"
    assert got["final_args"] == {"table": "users", "limit": 5}


def test_deny_with_reason(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    rid = served.submit(UPDATE)
    code, out, err = run(capsys, "deny", rid, "--reason", "not during the freeze",
                         *on(served))
    assert code == 0, err
    assert f"request {rid} is now denied" in out
    got = served.get(rid)
    assert got["state"] == "denied"
    assert got["reason"] == "not during the freeze"


def test_deny_needs_a_reason(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    rid = served.submit(UPDATE)
    code, _, err = run(capsys, "deny", rid, "--reason", "  ", *on(served))
    assert code == 1
    assert "--reason" in one_line(err)
    code, _, err = run(capsys, "deny", rid, *on(served))
    assert code == 2
    assert "--reason" in one_line(err)


def test_bad_json_args(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    rid = served.submit(UPDATE)
    code, _, err = run(capsys, "approve", rid, "--args", "{limit: 5", *on(served))
    assert code == 1
    assert "--args is not valid JSON" in one_line(err)
    code, _, err = run(capsys, "approve", rid, "--args", "[1, 2]", *on(served))
    assert code == 1
    assert "JSON object" in one_line(err)
    assert served.get(rid)["state"] == "pending"


def test_unknown_id(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["approve", "01NOSUCHREQUEST0000000000A"],
                 ["deny", "01NOSUCHREQUEST0000000000A", "--reason", "no"]):
        code, _, err = run(capsys, *argv, *on(served))
        assert code == 1
        assert "not_found" in one_line(err)
    code, _, err = run(capsys, "approve", "../queue", *on(served))
    assert code == 1
    assert "is not a request id" in one_line(err)


def test_not_pending(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    rid = served.submit(UPDATE)
    assert run(capsys, "deny", rid, "--reason", "no", *on(served))[0] == 0
    code, _, err = run(capsys, "approve", rid, *on(served))
    assert code == 1
    assert "is denied, not pending" in one_line(err)


def test_bad_token_and_no_token(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "queue", "--server", served.url, "--token", "il_wrong")
    assert code == 1
    assert "401" in one_line(err)
    code, _, err = run(capsys, "queue", "--server", served.url)
    assert code == 1
    assert "INTERLOCK_TOKEN" in one_line(err)


def test_no_server(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for argv in (["queue"], ["approve", "01ABC"], ["deny", "01ABC", "--reason", "no"]):
        code, _, err = run(capsys, *argv, "--server", url, "--token", "il_x")
        assert code == 1
        assert "cannot reach the server" in one_line(err)
    code, _, err = run(capsys, "queue", "--server", "ftp://example", "--token", "il_x")
    assert code == 1
    assert "--server" in one_line(err)


def test_not_an_interlock_server(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # Something that answers HTTP, but not interlock's JSON.
    app_port = free_port()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/html")]})
        await send({"type": "http.response.body", "body": b"<html>hi</html>"})

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=app_port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        code, _, err = run(capsys, "queue", "--server", f"http://127.0.0.1:{app_port}",
                           "--token", "il_x")
        assert code == 1
        assert "not JSON" in one_line(err)
    finally:
        server.should_exit = True
        thread.join(10)


def test_approve_and_remember(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    vacuum = {"action": "db.vacuum", "args": {"table": "logs_2026_11"}}
    rid = served.submit(vacuum)
    code, out, err = run(capsys, "approve", rid, "--remember", "agent_action",
                         "--args-pattern", '{"table": "logs_*"}', *on(served))
    assert code == 0, err
    assert f"request {rid} is now approved" in out
    headers = {"Authorization": f"Bearer {served.agent}"}
    again = httpx.post(f"{served.url}/v1/actions", headers=headers,
                       json={"action": "db.vacuum", "args": {"table": "logs_2026_12"}}).json()
    assert (again["decision"], again["state"]) == ("allow", "allowed")  # the grant let it by
    other = httpx.post(f"{served.url}/v1/actions", headers=headers,
                       json={"action": "db.vacuum", "args": {"table": "users"}}).json()
    assert other["state"] == "pending"  # outside the pattern: asks again


def test_remember_needs_a_known_scope(served: Served,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    rid = served.submit({"action": "db.analyze", "args": {"table": "users"}})
    code, _, err = run(capsys, "approve", rid, "--remember", "forever", *on(served))
    assert code == 1
    assert "--remember is agent_action, run or until, not `forever`" in one_line(err)
    code, _, err = run(capsys, "approve", rid, "--remember", "until", *on(served))
    assert code == 1
    assert "`remember.scope: until` needs `until`" in one_line(err)  # the server's word
    assert served.get(rid)["state"] == "pending"
