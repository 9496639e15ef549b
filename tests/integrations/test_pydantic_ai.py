"""Pydantic AI behind interlock, driven by a `FunctionModel` that emits tool calls."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pa_helpers import POLICY, Desk, scripted, tool_returns
from pydantic_ai import Agent
from pydantic_ai.messages import ToolCallPart
from pydantic_ai.tools import DeferredToolRequests
from pydantic_ai.toolsets import FunctionToolset
from tests.doc_examples import run_doc_example

from interlock import Gate
from interlock.integrations.pydantic_ai import InterlockToolset, deferred_results

DOC = Path(__file__).resolve().parents[2] / "docs" / "integrations" / "pydantic-ai.md"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Gate, Desk, list[str]]]:
    policy = tmp_path / "interlock.yaml"
    policy.write_text(POLICY)
    db = f"sqlite:///{tmp_path / 'interlock.db'}"
    gate = Gate.from_policy(policy, db=db, channel="web", agent="pa-bot",
                            state_dir=tmp_path / "state", poll=0.01)
    desk = Desk(policy, db)
    yield gate, desk, []
    desk.close()
    gate.close()


def agent_for(gate: Gate, ran: list[str], *calls: ToolCallPart) -> Agent[None, object]:
    tools: FunctionToolset[None] = FunctionToolset()

    @tools.tool_plain
    def read_balance(account: str) -> str:
        ran.append(f"read_balance {account}")
        return f"{account}: 420 EUR"

    @tools.tool_plain
    def send_payment(to: str, amount: float) -> str:
        ran.append(f"send_payment {to} {amount:g}")
        return f"sent {amount:g} EUR to {to}"

    @tools.tool_plain
    def drop_table(name: str) -> str:
        ran.append(f"drop_table {name}")
        return "dropped"

    return Agent(scripted(*calls), toolsets=[InterlockToolset(tools, gate=gate)],
                 output_type=[str, DeferredToolRequests])


def run(agent: Agent[None, object], prompt: str | None = None, **kwargs: Any) -> Any:
    # asyncio.run closes its loop; run_sync keeps one open, a ResourceWarning here.
    return asyncio.run(agent.run(prompt, **kwargs))


def pay(amount: float, call_id: str = "pay-1") -> ToolCallPart:
    return ToolCallPart("send_payment", {"to": "acme", "amount": amount}, tool_call_id=call_id)


def test_an_allowed_tool_runs_at_once(world: tuple[Gate, Desk, list[str]]) -> None:
    gate, _desk, ran = world
    agent = agent_for(gate, ran, ToolCallPart("read_balance", {"account": "ops"}, "rb-1"))
    result = run(agent, "balance?")
    assert result.output == "read_balance: ops: 420 EUR"
    assert ran == ["read_balance ops"]
    assert [t.state for t in gate.pending()] == []  # claimed and reported


def test_a_gated_tool_waits_for_a_reviewer_then_runs(
        world: tuple[Gate, Desk, list[str]]) -> None:
    gate, desk, ran = world
    agent = agent_for(gate, ran, pay(12000))
    first = run(agent, "pay acme")
    assert isinstance(first.output, DeferredToolRequests)
    assert ran == []
    request_id = first.output.metadata["pay-1"]["interlock"]["request_id"]
    assert desk.get(request_id).state.value == "pending"

    # deferred_results waits: a reviewer approves through the gateway a moment later.
    threading.Timer(0.2, desk.approve, args=(request_id,)).start()
    started = time.monotonic()
    results = asyncio.run(deferred_results(gate, first.output))
    assert time.monotonic() - started >= 0.15
    second = run(agent, message_history=first.all_messages(), deferred_tool_results=results)
    assert ran == ["send_payment acme 12000"]
    assert second.output == "send_payment: sent 12000 EUR to acme"
    assert desk.get(request_id).state.value == "succeeded"


def test_an_edited_approval_runs_with_the_edited_arguments(
        world: tuple[Gate, Desk, list[str]]) -> None:
    gate, desk, ran = world
    agent = agent_for(gate, ran, pay(12000))
    first = run(agent, "pay acme")
    assert isinstance(first.output, DeferredToolRequests)
    request_id = first.output.metadata["pay-1"]["interlock"]["request_id"]
    desk.approve(request_id, args={"to": "acme", "amount": 900})
    results = asyncio.run(deferred_results(gate, first.output))
    assert results.approvals["pay-1"].override_args == {"to": "acme", "amount": 900}  # type: ignore[union-attr]
    second = run(agent, message_history=first.all_messages(), deferred_tool_results=results)
    assert ran == ["send_payment acme 900"]
    assert second.output == "send_payment: sent 900 EUR to acme"


def test_a_denial_reaches_the_model_with_the_reason(
        world: tuple[Gate, Desk, list[str]]) -> None:
    gate, desk, ran = world
    agent = agent_for(gate, ran, pay(12000))
    first = run(agent, "pay acme")
    assert isinstance(first.output, DeferredToolRequests)
    desk.deny(first.output.metadata["pay-1"]["interlock"]["request_id"], "over this month's budget")
    results = asyncio.run(deferred_results(gate, first.output))
    second = run(agent, message_history=first.all_messages(), deferred_tool_results=results)
    assert ran == []
    [denial] = [r for r in tool_returns(second.all_messages()) if r.tool_name == "send_payment"]
    assert "over this month's budget" in denial.model_response_str()
    assert "over this month's budget" in str(second.output)


def test_a_policy_refusal_and_an_allowed_call_in_one_turn(
        world: tuple[Gate, Desk, list[str]]) -> None:
    gate, _desk, ran = world
    agent = agent_for(gate, ran, ToolCallPart("drop_table", {"name": "users"}, "dt-1"),
                      ToolCallPart("read_balance", {"account": "ops"}, "rb-1"))
    result = run(agent, "clean up")
    assert ran == ["read_balance ops"]
    assert "interlock denied `drop_table`" in str(result.output)
    assert "rule never-drop" in str(result.output)


def test_the_docs_example_runs(tmp_path: Path) -> None:
    out = run_doc_example(DOC, tmp_path, timeout=60)
    assert "waiting for a reviewer: send_payment" in out
    assert "sent 900 EUR to acme" in out
    assert "over budget" in out
