"""The OpenAI Agents SDK behind interlock, driven by the SDK's own `ScriptedModel`."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, Runner, RunResult, RunState
from oa_helpers import POLICY, Desk, billing_agent, calls
from tests.doc_examples import run_doc_example

from interlock import Gate
from interlock.integrations.openai_agents import resolve, resume

DOC = Path(__file__).resolve().parents[2] / "docs" / "integrations" / "openai-agents.md"
HERE = Path(__file__).resolve().parent


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "interlock.yaml").write_text(POLICY)
    return tmp_path


@pytest.fixture
def world(workdir: Path) -> Iterator[tuple[Gate, Desk, list[str]]]:
    db = f"sqlite:///{workdir / 'interlock.db'}"
    gate = Gate.from_policy(workdir / "interlock.yaml", db=db, channel="web", agent="oa-bot",
                            state_dir=workdir / "state", poll=0.01)
    desk = Desk(workdir / "interlock.yaml", db)
    yield gate, desk, []
    desk.close()
    gate.close()


def run(agent: Agent[Any], start: Any) -> RunResult:
    return asyncio.run(Runner.run(agent, start))


PAY = ("send_payment", {"to": "acme", "amount": 12000}, "pay-1")


def test_an_allowed_tool_runs_at_once(world: tuple[Gate, Desk, list[str]]) -> None:
    gate, _desk, ran = world
    agent = billing_agent(gate, ran, calls(("read_balance", {"account": "ops"}, "rb-1")))
    result = run(agent, "balance?")
    assert result.interruptions == []
    assert ran == ["read_balance ops"]
    assert result.final_output == "ops: 420 EUR"
    assert gate.pending() == []  # claimed and reported


def test_a_gated_tool_interrupts_and_runs_once_a_reviewer_approves(
        world: tuple[Gate, Desk, list[str]]) -> None:
    gate, desk, ran = world
    agent = billing_agent(gate, ran, calls(PAY))
    first = run(agent, "pay acme")
    [item] = first.interruptions
    assert item.name == "send_payment" and ran == []
    request_id = desk.only_pending()

    state = first.to_state()
    undecided = asyncio.run(resolve(gate, state, wait=False))
    assert [i.call_id for i in undecided] == ["pay-1"]  # nobody decided yet
    threading.Timer(0.2, desk.approve, args=(request_id,)).start()
    assert asyncio.run(resolve(gate, state)) == []                    # waits for rita
    second = run(agent, state)
    assert ran == ["send_payment acme 12000"]
    assert second.final_output == "sent 12000 EUR to acme"
    assert desk.get(request_id).state.value == "succeeded"


def test_an_edited_approval_runs_with_the_edited_arguments(
        world: tuple[Gate, Desk, list[str]]) -> None:
    gate, desk, ran = world
    agent = billing_agent(gate, ran, calls(PAY))
    first = run(agent, "pay acme")
    desk.approve(desk.only_pending(), args={"to": "acme", "amount": 900})
    state = first.to_state()
    asyncio.run(resolve(gate, state))
    second = run(agent, state)
    assert ran == ["send_payment acme 900"]
    assert second.final_output == "sent 900 EUR to acme"


def test_a_denial_reaches_the_model_with_the_reason(
        world: tuple[Gate, Desk, list[str]]) -> None:
    gate, desk, ran = world
    agent = billing_agent(gate, ran, calls(PAY, ("drop_table", {"name": "users"}, "dt-1")))
    first = run(agent, "pay acme and clean up")
    assert [i.name for i in first.interruptions] == ["send_payment"]  # the policy refused drop
    desk.deny(desk.only_pending(), "over this month's budget")
    state = first.to_state()
    asyncio.run(resolve(gate, state))
    second = run(agent, state)
    assert ran == []
    out = str(second.final_output)
    assert "interlock denied `send_payment`" in out and "over this month's budget" in out
    assert "interlock denied `drop_table`" in out and "rule never-drop" in out


def test_a_run_resumes_in_another_process_from_its_serialized_state(
        workdir: Path, world: tuple[Gate, Desk, list[str]]) -> None:
    gate, desk, ran = world
    first = run(billing_agent(gate, ran, calls(PAY)), "pay acme")
    assert first.interruptions
    (workdir / "state.json").write_text(first.to_state().to_string())
    # The state read back here resolves too: serialization keeps the interruptions.
    restored = asyncio.run(RunState.from_json(billing_agent(gate, []), first.to_state().to_json()))
    assert [i.name for i in restored.get_interruptions()] == ["send_payment"]

    desk.approve(desk.only_pending(), args={"to": "acme", "amount": 900})
    child = subprocess.run([sys.executable, str(HERE / "oa_child.py"), str(workdir)],
                           cwd=HERE, capture_output=True, text=True, timeout=60)
    assert child.returncode == 0, child.stderr
    answer = json.loads(child.stdout.strip().splitlines()[-1])
    assert answer == {"ran": ["send_payment acme 900"], "output": "sent 900 EUR to acme"}
    assert ran == []

    # Resuming the same state again does not pay twice: the request was claimed once.
    again: list[str] = []
    result = asyncio.run(resume(gate, billing_agent(gate, again),
                                (workdir / "state.json").read_text()))
    assert again == []
    assert "already claimed" in str(result.final_output)


def test_the_docs_example_runs(tmp_path: Path) -> None:
    out = run_doc_example(DOC, tmp_path, timeout=60)
    assert "waiting for a reviewer: send_payment" in out
    assert "sent 900 EUR to acme" in out
    assert "over budget" in out
