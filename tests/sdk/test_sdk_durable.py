"""Durable mode: submit returns at once, resume claims exactly once, in any process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sdk_helpers import Desk, reviewer

from interlock import Action, AlreadyClaimed, Gate, ReviewDecision, StillPending, Ticket
from interlock.gateway import Gateway
from interlock.sdk import Resumed
from interlock.store import State, Store

MakeGate = Callable[..., Gate]
CHILD = str(Path(__file__).with_name("agent_child.py"))
FINANCE = reviewer("finance")


def payment(amount: float = 70, **extra: object) -> Action:
    return Action(action="send_payment", capabilities=["payment"],
                  args={"to": "acme", "amount": amount}, **extra)  # type: ignore[arg-type]


def test_submit_pending_resume_and_exactly_once(
    make_gate: MakeGate, gateway: Gateway, desk: Desk
) -> None:
    gate = make_gate()
    ticket = gate.submit(payment(checkpoint={"step": 2}))
    assert ticket.state == "pending" and ticket.decision == "require_approval"
    assert [t.id for t in gate.pending()] == [ticket.id]
    with pytest.raises(StillPending):
        gate.resume(ticket.id, wait=False)

    gateway.decide(ticket.id, FINANCE, "approve", args={"to": "acme", "amount": 60})
    later = make_gate(channel=desk)  # "another process": a fresh Gate on the same store
    resumed = later.resume(ticket.id)
    assert resumed.args == {"to": "acme", "amount": 60}
    assert resumed.checkpoint == {"step": 2}
    assert resumed.state == "approved" and resumed.decision == "require_approval"
    assert desk.seen == []  # decided already: nobody is asked again
    assert gate.pending() == []
    with pytest.raises(AlreadyClaimed):
        gate.resume(ticket.id)
    later.report(ticket.id, "succeeded", "paid")
    assert gateway.get(ticket.id, FINANCE).state is State.SUCCEEDED


def test_resume_asks_the_channel_when_still_pending(make_gate: MakeGate, desk: Desk) -> None:
    ticket = make_gate().submit(payment())
    desk.answers.append(ReviewDecision(verdict="approve"))
    result = make_gate(channel=desk).resume(ticket.id, lambda to, amount: f"{to}:{amount}")
    assert result == "acme:70"


def test_batch_submits_one_batch(make_gate: MakeGate, gateway: Gateway) -> None:
    gate = make_gate()
    tickets = gate.batch([payment(1), payment(2), Action(action="read_x", args={})])
    assert len({t.batch_id for t in tickets}) == 1 and tickets[0].batch_id
    assert [t.state for t in tickets] == ["pending", "pending", "allowed"]
    outcome = gateway.decide_batch(str(tickets[0].batch_id), FINANCE, "approve_all", agent="bot")
    assert len(outcome.results) == 2
    assert [gate.resume(t.id).args.get("amount") for t in tickets] == [1, 2, None]


def test_records_round_trip() -> None:
    action = payment(5, checkpoint={"a": [1, {"b": None}]}, confidence=0.4, batch_id="b1")
    assert Action.from_json(json.loads(json.dumps(action.to_json()))) == action
    ticket = Ticket(id="01", action="x", decision="allow", state="allowed", reasons=("r",),
                    rules=("k",), risk="low", version=3, batch_id="b")
    assert Ticket.from_json(json.loads(json.dumps(ticket.to_json()))) == ticket
    resumed = Resumed(id="01", action="x", decision="allow", state="allowed", args={"a": 1},
                      checkpoint=[1, "two"], lease_expires_at=1.5, digest="d")
    assert Resumed.from_json(json.loads(json.dumps(resumed.to_json()))) == resumed
    with pytest.raises(ValueError, match="format 2"):
        Ticket.from_json({**ticket.to_json(), "format": 2})
    with pytest.raises(ValueError, match="unknown action fields"):
        Action.from_json({"action": "x", "bogus": 1})


def _child(*args: str) -> list[str]:
    return [sys.executable, CHILD, *args]


def test_sigkilled_waiting_agent_resumes_in_a_new_process(
    policy_path: Path, db_url: str, tmp_path: Path, gateway: Gateway
) -> None:
    state = str(tmp_path / "state")
    with subprocess.Popen(_child("submit-and-wait", str(policy_path), db_url, state),
                          stdout=subprocess.PIPE, text=True) as first:
        assert first.stdout is not None
        rid = first.stdout.readline().strip()
        time.sleep(0.3)  # it is now blocked waiting for a reviewer
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
    assert first.returncode == -signal.SIGKILL
    assert gateway.get(rid, FINANCE).state is State.PENDING

    gateway.decide(rid, FINANCE, "approve", note="ok")  # the reviewer decides meanwhile
    second = subprocess.run(_child("resume", str(policy_path), db_url, state, rid),
                            capture_output=True, text=True, timeout=60)
    assert second.returncode == 0, second.stderr
    assert "ASKED" not in second.stdout
    out = json.loads(second.stdout.strip().splitlines()[-1])
    assert out == {"args": {"to": "acme", "amount": 70},
                   "checkpoint": {"step": 3, "notes": ["fetched invoice"]}}
    assert gateway.get(rid, FINANCE).state is State.SUCCEEDED


def _race(gates: list[Gate], rid: str) -> tuple[list[int], list[int]]:
    ran: list[int] = []
    lost: list[int] = []
    barrier = threading.Barrier(len(gates))

    def one(i: int, gate: Gate) -> None:
        barrier.wait()
        try:
            gate.resume(rid, lambda **_: ran.append(i))
        except AlreadyClaimed:
            lost.append(i)

    threads = [threading.Thread(target=one, args=(i, g)) for i, g in enumerate(gates)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return ran, lost


def test_concurrent_resumes_run_the_body_once(
    make_gate: MakeGate, gateway: Gateway, store: Store
) -> None:
    gates = [make_gate() for _ in range(8)]  # eight "agents", each with its own connections
    for _ in range(5):
        ticket = gates[0].submit(payment())
        gateway.decide(ticket.id, FINANCE, "approve")
        ran, lost = _race(gates, ticket.id)
        assert len(ran) == 1 and len(lost) == 7
        assert store.get(ticket.id).state is State.SUCCEEDED


def test_concurrent_resumes_across_processes(
    policy_path: Path, db_url: str, tmp_path: Path, make_gate: MakeGate, gateway: Gateway
) -> None:
    ticket = make_gate().submit(payment())
    gateway.decide(ticket.id, FINANCE, "approve")
    procs = [subprocess.Popen(_child("race", str(policy_path), db_url, str(tmp_path / "s"),
                                     ticket.id), stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
    outs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert sorted(outs) == ["CLAIMED-ELSEWHERE"] * 3 + ["RAN"]
