"""Remote mode against a real `interlock serve` subprocess over a socket."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sdk_helpers import POLICY

from interlock import Action, AlreadyClaimed, Denied, Gate
from interlock.errors import BadInput, StoreUnavailable
from interlock.store import open_store


@dataclass
class Server:
    url: str
    db: str
    policy: Path
    agent_token: str
    reviewer_token: str

    def reviewer(self) -> httpx.Client:
        return httpx.Client(base_url=self.url,
                            headers={"Authorization": f"Bearer {self.reviewer_token}"})

    def decide(self, rid: str, verdict: str, **body: Any) -> dict[str, Any]:
        with self.reviewer() as http:
            resp = http.post(f"/v1/actions/{rid}/decision", json={"verdict": verdict, **body})
            assert resp.status_code == 200, resp.text
            return dict(resp.json())

    def requests(self) -> list[Any]:
        store = open_store(self.db)
        try:
            return store.list_requests(agent="bot")
        finally:
            store.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("serve")
    policy = root / "interlock.yaml"
    policy.write_text(POLICY)
    db = f"sqlite:///{root / 'interlock.db'}"
    store = open_store(db)
    _, agent = store.create_token(kind="agent", name="bot", actor="test")
    _, rev = store.create_token(kind="reviewer", name="rita", groups=("finance",), actor="test")
    store.close()
    port = _free_port()
    with subprocess.Popen(
        [shutil.which("interlock") or "interlock", "serve", "--policy", str(policy), "--db", db,
         "--port", str(port)], cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    ) as proc:
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(200):
                try:
                    if httpx.get(f"{url}/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if proc.poll() is not None:
                    err = proc.stderr.read() if proc.stderr else b""
                    pytest.fail(f"interlock serve exited: {err!r}")
                time.sleep(0.05)
            yield Server(url=url, db=db, policy=policy, agent_token=agent, reviewer_token=rev)
        finally:
            proc.terminate()
            proc.wait(10)


@pytest.fixture
def gate(server: Server, tmp_path: Path) -> Iterator[Gate]:
    g = Gate.connect(server.url, token=server.agent_token, state_dir=tmp_path / "state")
    yield g
    g.close()


def test_guard_allowed_and_approved_with_edit(server: Server, gate: Gate) -> None:
    @gate.guard(action="read_status")
    def read_status(host: str) -> str:
        return f"up:{host}"

    assert read_status("db1") == "up:db1"

    def approve_when_pending() -> None:
        with server.reviewer() as http:
            for _ in range(400):
                items = http.get("/v1/queue").json().get("items", [])
                mine = [i for i in items if i.get("state") == "pending"
                        and (i.get("action") or {}).get("action") == "send_payment"]
                if mine:
                    server.decide(mine[0]["id"], "approve", args={"to": "acme", "amount": 40})
                    return
                time.sleep(0.02)

    reviewer = threading.Thread(target=approve_when_pending)
    reviewer.start()

    @gate.guard(action="send_payment", capabilities=["payment"])
    def send_payment(to: str, amount: float) -> float:
        return amount

    try:
        assert send_payment("acme", 400) == 40
    finally:
        reviewer.join()


def test_durable_submit_resume_and_deny(server: Server, gate: Gate, tmp_path: Path) -> None:
    pay = Action(action="send_payment", capabilities=["payment"],
                 args={"to": "acme", "amount": 5}, checkpoint={"step": 1})
    ticket = gate.submit(pay)
    later = Gate.connect(server.url, token=server.agent_token, state_dir=tmp_path / "state")
    try:
        assert [t.id for t in later.pending()] == [ticket.id]
        server.decide(ticket.id, "approve", note="fine")
        resumed = later.resume(ticket.id)
        assert resumed.checkpoint == {"step": 1} and resumed.args["amount"] == 5
        later.report(resumed.id, "succeeded", "paid")
        with pytest.raises(AlreadyClaimed):
            gate.resume(ticket.id)
        assert later.pending() == []
    finally:
        later.close()
    denied = gate.submit(Action(action="send_payment", capabilities=["payment"],
                                args={"to": "x", "amount": 1}))
    server.decide(denied.id, "deny", note="unknown vendor")
    with pytest.raises(Denied, match="unknown vendor"):
        gate.resume(denied.id)


class DropAfterSend(httpx.BaseTransport):
    """Forwards each request; the first submit's answer is lost as if the link dropped."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.dropped = 0
        self.submits = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)  # the server got it and answered
        if request.method == "POST" and request.url.path == "/v1/actions":
            self.submits += 1
            if self.dropped == 0:
                self.dropped += 1
                response.close()
                raise httpx.ReadError("connection reset by peer", request=request)
        return response

    def close(self) -> None:
        self.inner.close()


def test_connection_dropped_mid_submit_creates_one_request(
    server: Server, tmp_path: Path
) -> None:
    transport = DropAfterSend()
    before = len(server.requests())
    with Gate.connect(server.url, token=server.agent_token, transport=transport,
                      state_dir=tmp_path / "s") as gate:
        assert gate.run(Action(action="read_once", args={"n": 1}), lambda n: n + 1) == 2
    assert transport.dropped == 1 and transport.submits == 2
    after = server.requests()
    assert len(after) == before + 1
    assert after[-1].action_name == "read_once" and after[-1].state.value == "succeeded"


def test_unreachable_server_fails_closed_then_audits_fail_open_runs(
    server: Server, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    dead = f"http://127.0.0.1:{_free_port()}"
    with Gate.connect(dead, token=server.agent_token, agent="bot", policy=server.policy,
                      state_dir=state, retries=1) as offline:
        with pytest.raises(StoreUnavailable, match="fail closed"):
            offline.run(Action(action="send_payment", capabilities=["payment"],
                               args={"amount": 1}), lambda amount: pytest.fail("ran"))
        assert offline.run(Action(action="read_ledger", args={}), lambda: "ok") == "ok"
    with Gate.connect(server.url, token=server.agent_token, state_dir=state) as online:
        assert online.flush_journal() == 1
    [audited] = [r for r in server.requests() if r.action_name == "read_ledger"]
    assert audited.state.value == "succeeded" and "ran fail-open" in (audited.reason or "")


def test_a_rate_limited_submit_says_when_to_come_back() -> None:
    """The server's 429 `rate_limit` carries Retry-After; the SDK's TooMany keeps it, so an
    agent framework can wait that long instead of guessing (the SDK never retries a 429 by
    itself: the limit is there to stop a runaway loop)."""
    from interlock.errors import TooMany
    from interlock.sdk.remote import _error

    answer = httpx.Response(429, headers={"retry-after": "42"}, json={
        "error": {"code": "rate_limit", "message": "slow down: the next may come in 42 s"}})
    err = _error(answer)
    assert isinstance(err, TooMany)
    assert (err.code, err.retry_after, err.message) == (
        "rate_limit", 42.0, "slow down: the next may come in 42 s")
    pending = _error(httpx.Response(429, json={"error": {"code": "pending_limit",
                                                         "message": "wait"}}))
    assert isinstance(pending, TooMany) and pending.retry_after is None


@pytest.mark.parametrize("url", ["localhost:8765", "127.0.0.1:8765", "", "ftp://host/x"])
def test_a_url_that_is_not_http_is_refused_at_connect_not_taken_for_an_outage(
    url: str, tmp_path: Path
) -> None:
    # an outage lets `fail_open` actions run; a typo in the URL must not look like one
    with pytest.raises(BadInput, match="an http\\(s\\) URL"):
        Gate.connect(url, token="il_x", state_dir=tmp_path / "state")


def test_an_empty_token_is_refused_at_connect(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="a token is required"):
        Gate.connect("http://127.0.0.1:8765", token=" ", state_dir=tmp_path / "state")
