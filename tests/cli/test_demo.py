"""`interlock demo` as a subprocess: the sign-in link, the simulated agents' mix, a decision the
agents act on, and a clean exit on Ctrl-C.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from interlock.cli.demo import SCENARIOS, approver_groups
from interlock.policy import load_policy

LOG = re.compile(r"^\d\d:\d\d:\d\d (\S+)\s+(.+?)\s+(allow|notify|require_approval|suggest|deny)"
                 r"\s+([0-9A-Z]{26})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Demo:
    """A running `interlock demo`, its stdout collected line by line."""

    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from interlock.cli import entrypoint; entrypoint()",
             "demo", "--port", str(self.port), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def until(self, what: str, found: Callable[[], Any], timeout: float = 20) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = found()
            if got:
                return got
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        err = self.proc.stderr.read() if self.proc.poll() is not None and self.proc.stderr else ""
        raise AssertionError(f"no {what}; output:\n" + "\n".join(self.lines) + "\n" + err)

    def submitted(self) -> list[tuple[str, str, str]]:
        """(agent, decision, id) of each submission logged so far."""
        return [(m.group(1), m.group(3), m.group(4))
                for m in map(LOG.match, list(self.lines)) if m]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def demo() -> Iterator[Demo]:
    running = Demo("--interval", "0.25", "--seed", "3")
    try:
        yield running
    finally:
        running.close()


def test_demo_end_to_end(demo: Demo) -> None:
    base = f"http://127.0.0.1:{demo.port}"

    def link() -> str | None:
        for line in demo.lines:
            m = re.search(re.escape(base) + r"/login\?token=(\S+)", line)
            if m:
                return m.group(1)
        return None

    reviewer = demo.until("sign-in link", link)
    auth = {"Authorization": f"Bearer {reviewer}"}
    assert httpx.get(f"{base}/login", params={"token": reviewer}).status_code < 500

    # The first round shows every scenario once: allowed, pending, refused, suggested.
    demo.until("a varied mix", lambda: len(demo.submitted()) >= len(SCENARIOS))
    with httpx.Client(base_url=base, headers=auth, timeout=10) as api:
        seen = {api.get(f"/v1/actions/{rid}").json()["decision"]
                for _, _, rid in demo.submitted()}
        assert {"allow", "require_approval", "deny", "suggest"} <= seen, seen
        assert len({agent for agent, _, _ in demo.submitted()}) >= 3

        # Allowed actions are claimed and their outcome reported.
        allowed = next(rid for _, d, rid in demo.submitted() if d == "allow")
        demo.until("an outcome for an allowed action",
                   lambda: api.get(f"/v1/actions/{allowed}").json()["state"]
                   in ("succeeded", "failed"))

        # A production deploy waits with its preview and plan step; approving it (with the
        # typed phrase) lets the waiting agent claim it and report how it went.
        queue = api.get("/v1/queue").json()["items"]
        deploy = next(i for i in queue if i["action"]["action"] == "deploy"
                      and i["action"].get("environment") == "production")
        assert deploy["action"]["preview"]["kind"] == "diff"
        assert deploy["action"]["context"]["plan_step"] == 3
        assert deploy["confirmation_phrase"] == "deploy production"
        r = api.post(f"/v1/actions/{deploy['id']}/decision", json={
            "verdict": "approve", "version": deploy["version"],
            "confirmation": "deploy production"})
        assert r.status_code == 200, r.text
        done = demo.until("the approved deploy's outcome", lambda: (
            api.get(f"/v1/actions/{deploy['id']}").json()["state"]
            if api.get(f"/v1/actions/{deploy['id']}").json()["state"]
            in ("succeeded", "failed") else None))
        assert done in ("succeeded", "failed")
        demo.until("the outcome in the log", lambda: any(
            deploy["id"] in line and done in line for line in demo.lines))

        # Changes requested: the agent proposes a linked revision.
        update = next(i for i in queue if i["action"]["action"] == "crm.update_contacts")
        r = api.post(f"/v1/actions/{update['id']}/decision", json={
            "verdict": "request_changes", "note": "only DE for now"})
        assert r.status_code == 200, r.text
        revised = demo.until("a revision", lambda: next(
            (rid for _, _, rid in demo.submitted()
             if api.get(f"/v1/actions/{rid}").json()["revision_of"] == update["id"]), None))
        assert "only DE for now" in api.get(f"/v1/actions/{revised}").json()["action"]["reason"]

    started = time.monotonic()
    demo.proc.send_signal(signal.SIGINT)
    assert demo.proc.wait(timeout=10) == 0
    assert time.monotonic() - started < 6
    err = demo.proc.stderr.read() if demo.proc.stderr else ""
    assert "Traceback" not in err, err
    assert "demo stopped" in "\n".join(demo.lines)


def test_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-c", "from interlock.cli import entrypoint; entrypoint()",
             "demo", "--port", str(port)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr


def test_reviewers_cover_every_approver_group() -> None:
    from importlib import resources

    with resources.as_file(resources.files("interlock.policy") / "starter.yaml") as path:
        groups = approver_groups(load_policy(path))
    assert set(groups) == {"on-call", "tech-lead", "engineering-manager", "finance",
                           "security-team"}
    assert {s.agent for s in SCENARIOS} >= {"ops-agent", "billing-bot", "support-bot"}
