"""The MCP gateway end to end: the official `mcp` client talks through `interlock mcp-proxy` to
the real `mcp-server-time` and to a test server with a destructive tool, over stdio and once
over streamable HTTP; reviewers decide through the gateway on the same database, and once,
against a real `interlock serve`, through the HTTP API."""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from interlock.gateway import Gateway, Principal
from interlock.integrations.mcp_proxy import RESUME_ARG, risk_of
from interlock.policy import load_policy
from interlock.store import State, open_store

HERE = Path(__file__).parent
SERVER = HERE / "mcp_destructive_server.py"
DOC = HERE.parents[1] / "docs" / "integrations" / "mcp.md"
INTERLOCK = [sys.executable, "-c", "from interlock.cli import entrypoint; entrypoint()"]
POLICY = """\
version: 1
defaults: {decision: allow, approvers: [on-call]}
rules:
  - name: destructive-tools-wait-for-people
    match: {capabilities: destructive}
    decision: require_approval
  - name: never-touch-etc
    match: {action: delete_file, args.path: "/etc/*"}
    decision: deny
"""
REVIEWER = Principal(role="reviewer", name="alice", groups=("on-call",))


def _proxy(tmp: Path, *args: str, wait: float = 30) -> list[str]:
    (tmp / "policy.yaml").write_text(POLICY)
    return [*INTERLOCK, "mcp-proxy", "--policy", str(tmp / "policy.yaml"),
            "--db", f"sqlite:///{tmp / 'il.db'}", "--wait", str(wait), *args, "--"]


@asynccontextmanager
async def through_proxy(tmp: Path, downstream: list[str], *, wait: float = 30
                        ) -> AsyncIterator[ClientSession]:
    cmd = [*_proxy(tmp, wait=wait), *downstream]
    params = StdioServerParameters(command=cmd[0], args=cmd[1:], cwd=str(tmp),
                                   env={**os.environ, "MCP_TEST_COUNTS": str(tmp / "runs.json")})
    with (tmp / "proxy.err").open("w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), \
                ClientSession(read, write) as session:
            await session.initialize()
            yield session


def _gateway(tmp: Path) -> Gateway:
    (tmp / "policy.yaml").write_text(POLICY)
    return Gateway(load_policy(tmp / "policy.yaml"), open_store(f"sqlite:///{tmp / 'il.db'}"))


def _runs(tmp: Path) -> list[dict[str, Any]]:
    path = tmp / "runs.json"
    runs: list[dict[str, Any]] = json.loads(path.read_text()) if path.exists() else []
    return runs


def _text(result: Any) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


def _approve_when_pending(gateway: Gateway, action: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pending = gateway.store.list_requests(state=State.PENDING, agent="mcp-proxy", limit=10)
        for request in pending:
            if request.action_name == action:
                gateway.decide(request.id, REVIEWER, "approve", version=request.version,
                               args={"path": "/tmp/approved-edit"})
                return request.id
        time.sleep(0.05)
    raise AssertionError(f"no pending `{action}` appeared")


def test_annotations_raise_risk_never_lower_it() -> None:
    from mcp_types import ToolAnnotations

    assert risk_of(None) == (None, [])
    assert risk_of(ToolAnnotations(read_only_hint=True)) == ("low", ["read_only"])
    assert risk_of(ToolAnnotations(destructive_hint=True)) == ("high", ["destructive"])
    assert risk_of(ToolAnnotations(open_world_hint=True)) == ("medium", ["open_world"])


def test_read_only_calls_to_mcp_server_time_pass(tmp_path: Path) -> None:
    async def main() -> None:
        async with through_proxy(tmp_path, [sys.executable, "-m", "mcp_server_time"]) as s:
            tools = {t.name: t for t in (await s.list_tools()).tools}
            assert set(tools) == {"get_current_time", "convert_time"}
            assert tools["get_current_time"].annotations is not None
            result = await s.call_tool("get_current_time", {"timezone": "UTC"})
            assert not result.is_error, _text(result)
            assert result.structured_content["timezone"] == "UTC"

    anyio.run(main)
    gateway = _gateway(tmp_path)
    [request] = gateway.store.list_requests(agent="mcp-proxy", limit=10)
    assert request.action_name == "get_current_time" and request.state is State.SUCCEEDED
    gateway.store.close()


def test_destructive_calls_wait_for_a_reviewer_denials_carry_the_reason(tmp_path: Path) -> None:
    gateway = _gateway(tmp_path)
    progress: list[str] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(message or "")

    async def main() -> None:
        async with through_proxy(tmp_path, [sys.executable, str(SERVER)], wait=3) as s:
            assert {t.name for t in (await s.list_tools()).tools} == {"read_file",
                                                                      "delete_file"}
            # Resources and prompts pass through.
            read = await s.read_resource("notes://readme")
            assert "hello from the downstream" in read.contents[0].text  # type: ignore[union-attr]
            assert (await s.list_prompts()).prompts[0].name == "review"

            ok = await s.call_tool("read_file", {"path": "notes.txt"})
            assert not ok.is_error and "contents of notes.txt" in _text(ok)

            denied = await s.call_tool("delete_file", {"path": "/etc/passwd"})
            assert denied.is_error and "never-touch-etc" in _text(denied)
            assert denied.meta is not None and denied.meta["interlock"]["state"] == "denied"

            # Held until a reviewer approves (with an edit), then run once with the edit.
            async with anyio.create_task_group() as tg:
                tg.start_soon(anyio.to_thread.run_sync, _approve_when_pending, gateway,
                              "delete_file")
                held = await s.call_tool("delete_file", {"path": "/tmp/x"},
                                         progress_callback=on_progress)
            assert not held.is_error, _text(held)
            assert "deleted /tmp/approved-edit" in _text(held)

            # Nobody decides within --wait: the agent gets the id to retry with.
            later = await s.call_tool("delete_file", {"path": "/tmp/y"})
            assert later.is_error and later.meta is not None
            rid = later.meta["interlock"]["request_id"]
            assert rid in _text(later) and RESUME_ARG in _text(later)
            request = gateway.store.get(rid)
            gateway.decide(rid, REVIEWER, "approve", version=request.version)
            resumed = await s.call_tool("delete_file", {"path": "/tmp/y", RESUME_ARG: rid})
            assert not resumed.is_error and "deleted /tmp/y" in _text(resumed)
            again = await s.call_tool("delete_file", {"path": "/tmp/y", RESUME_ARG: rid})
            assert again.is_error  # claimed once: a second retry does not run it again

    anyio.run(main)
    assert any("waiting for a reviewer" in m for m in progress)
    assert [r["args"]["path"] for r in _runs(tmp_path) if r["tool"] == "delete_file"] == [
        "/tmp/approved-edit", "/tmp/y"]
    requests = gateway.store.list_requests(agent="mcp-proxy", limit=20)
    states = sorted((r.action_name, r.state.value) for r in requests)
    assert states == [("delete_file", "denied"), ("delete_file", "succeeded"),
                      ("delete_file", "succeeded"), ("read_file", "succeeded")]
    for request in requests:  # every call is in the audit trail
        events = [e.event for e in gateway.store.timeline(request.id)]
        assert events, request.id
    gateway.store.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_streamable_http_listen_mode(tmp_path: Path) -> None:
    port = _free_port()
    cmd = [*_proxy(tmp_path, "--listen", f"127.0.0.1:{port}"), sys.executable, str(SERVER)]
    env = {**os.environ, "MCP_TEST_COUNTS": str(tmp_path / "runs.json")}
    with (tmp_path / "proxy.err").open("w") as err:
        proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=err,
                                env=env)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "proxy.err").read_text()
            try:
                httpx.get(f"http://127.0.0.1:{port}/mcp", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)

        async def main() -> None:
            async with streamable_http_client(f"http://127.0.0.1:{port}/mcp") as (r, w), \
                    ClientSession(r, w) as s:
                await s.initialize()
                assert len((await s.list_tools()).tools) == 2
                ok = await s.call_tool("read_file", {"path": "over-http"})
                assert not ok.is_error and "contents of over-http" in _text(ok)
                denied = await s.call_tool("delete_file", {"path": "/etc/hosts"})
                assert denied.is_error and "never-touch-etc" in _text(denied)

        anyio.run(main)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_docs_example_runs(tmp_path: Path) -> None:
    text = DOC.read_text()
    policy = re.search(r"```yaml\n(.*?)```", text, re.S)
    example = re.search(r"<!-- example: mcp -->\n```python\n(.*?)```", text, re.S)
    assert policy and example
    (tmp_path / "interlock.yaml").write_text(policy.group(1))
    (tmp_path / "example.py").write_text(example.group(1))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "interlock"  # the console script, wherever this interpreter lives
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -c "from interlock.cli import '
                    f'entrypoint; entrypoint()" "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, env=env, text=True,
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["['convert_time', 'get_current_time']", "ran UTC"]


def _approve_over_http(url: str, reviewer: str, action: str, timeout: float = 20.0) -> str:
    """A reviewer's side through the HTTP API: find the request in the queue, approve it."""
    auth = {"Authorization": f"Bearer {reviewer}"}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = httpx.get(f"{url}/v1/queue", headers=auth, timeout=5).json()["items"]
        for item in items:
            if item["action"]["action"] == action:
                answer = httpx.post(f"{url}/v1/actions/{item['id']}/decision", headers=auth,
                                    json={"verdict": "approve", "version": item["version"]},
                                    timeout=5)
                assert answer.status_code == 200, answer.text
                return str(item["id"])
        time.sleep(0.1)
    raise AssertionError(f"no pending `{action}` reached the queue")


def test_remote_mode_holds_a_call_until_approved_through_the_http_api(tmp_path: Path) -> None:
    from tests.server.servers import serving

    (tmp_path / "policy.yaml").write_text(POLICY)
    db = f"sqlite:///{tmp_path / 'il.db'}"
    store = open_store(db)
    _, agent = store.create_token(kind="agent", name="mcp-proxy", actor="test")
    _, reviewer = store.create_token(kind="reviewer", name="alice", groups=["on-call"],
                                     actor="test")
    store.close()
    with serving(tmp_path, "--policy", str(tmp_path / "policy.yaml"), "--db", db) as server:
        cmd = [*INTERLOCK, "mcp-proxy", "--server", server.url, "--token", agent,
               "--wait", "30", "--", sys.executable, str(SERVER)]
        params = StdioServerParameters(
            command=cmd[0], args=cmd[1:], cwd=str(tmp_path),
            env={**os.environ, "MCP_TEST_COUNTS": str(tmp_path / "runs.json")})

        async def main() -> None:
            with (tmp_path / "proxy.err").open("w") as errlog:
                async with stdio_client(params, errlog=errlog) as (read, write), \
                        ClientSession(read, write) as s:
                    await s.initialize()
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(anyio.to_thread.run_sync, _approve_over_http,
                                      server.url, reviewer, "delete_file")
                        held = await s.call_tool("delete_file", {"path": "/tmp/remote"})
                    assert not held.is_error, _text(held)
                    assert "deleted /tmp/remote" in _text(held)
                    denied = await s.call_tool("delete_file", {"path": "/etc/shadow"})
                    assert denied.is_error and "never-touch-etc" in _text(denied)

        anyio.run(main)
    runs = [r["args"]["path"] for r in _runs(tmp_path) if r["tool"] == "delete_file"]
    assert runs == ["/tmp/remote"]  # approved once, run once; the denied call never ran
    store = open_store(db)
    states = sorted((r.action_name, r.state.value)
                    for r in store.list_requests(agent="mcp-proxy", limit=10))
    assert states == [("delete_file", "denied"), ("delete_file", "succeeded")]
    store.close()


def test_a_downstream_command_that_is_not_there_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run([*_proxy(tmp_path), str(tmp_path / "no-such-server")],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"interlock: cannot start the downstream MCP server: `{tmp_path / 'no-such-server'}` "
        "is not an executable file or a command on PATH"]
