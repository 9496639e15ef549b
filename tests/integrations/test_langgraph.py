"""LangGraph / LangChain v1 behind interlock, driven by a fake chat model that emits tool calls."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from lg_helpers import POLICY, Desk, billing_agent, tool_messages, turn
from tests.doc_examples import run_doc_example

from interlock import Gate
from interlock.integrations.langgraph import resume_command

DOC = Path(__file__).resolve().parents[2] / "docs" / "integrations" / "langgraph.md"
PAY = ("send_payment", {"to": "acme", "amount": 12000}, "pay-1")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Gate, Desk, list[str]]]:
    policy = tmp_path / "interlock.yaml"
    policy.write_text(POLICY)
    db = f"sqlite:///{tmp_path / 'interlock.db'}"
    gate = Gate.from_policy(policy, db=db, channel="web", agent="lg-bot",
                            state_dir=tmp_path / "state", poll=0.01)
    desk = Desk(policy, db)
    yield gate, desk, []
    desk.close()
    gate.close()


def start(agent: Any, thread: str = "t1") -> Any:
    return agent.invoke({"messages": [HumanMessage("go")]},
                        {"configurable": {"thread_id": thread}}, version="v2")


def go_on(agent: Any, command: Any, thread: str = "t1") -> Any:
    return agent.invoke(command, {"configurable": {"thread_id": thread}}, version="v2")


def test_an_allowed_tool_runs_at_once(world: tuple[Gate, Desk, list[str]]) -> None:
    gate, _desk, ran = world
    agent = billing_agent(gate, ran, turn(("read_balance", {"account": "ops"}, "rb-1")))
    result = start(agent)
    assert not result.interrupts
    assert ran == ["read_balance ops"]
    assert tool_messages(result.value["messages"])["rb-1"].content == "ops: 420 EUR"
    assert gate.pending() == []  # claimed and reported


def test_a_gated_tool_pauses_the_graph_until_a_reviewer_approves(
        world: tuple[Gate, Desk, list[str]]) -> None:
    gate, desk, ran = world
    agent = billing_agent(gate, ran, turn(PAY, ("read_balance", {"account": "ops"}, "rb-1")))
    first = start(agent)
    [paused] = first.interrupts
    assert paused.value["type"] == "tool_approval" and paused.value["name"] == "send_payment"
    request_id = paused.value["interlock_request_id"]
    assert desk.pending() == [request_id]
    assert ran == ["read_balance ops"]  # the allowed call in the same turn did not wait

    # Resumed before anyone decided: it pauses again, nothing runs.
    again = go_on(agent, resume_command(gate, first.interrupts, wait=False))
    assert again.interrupts and ran == ["read_balance ops"]

    threading.Timer(0.2, desk.approve, args=(request_id,)).start()
    done = go_on(agent, resume_command(gate, again.interrupts))  # waits for rita
    assert not done.interrupts
    assert ran == ["read_balance ops", "send_payment acme 12000"]
    assert tool_messages(done.value["messages"])["pay-1"].content == "sent 12000 EUR to acme"
    assert desk.get(request_id).state.value == "succeeded"


def test_an_edited_approval_runs_with_the_edited_arguments(
        world: tuple[Gate, Desk, list[str]]) -> None:
    gate, desk, ran = world
    agent = billing_agent(gate, ran, turn(PAY))
    first = start(agent)
    desk.approve(first.interrupts[0].value["interlock_request_id"],
                 args={"to": "acme", "amount": 900})
    done = go_on(agent, resume_command(gate, first.interrupts))
    assert ran == ["send_payment acme 900"]
    message = tool_messages(done.value["messages"])["pay-1"]
    assert str(message.content).endswith("sent 900 EUR to acme")
    assert "a reviewer changed this tool call" in str(message.content)


def test_a_denial_reaches_the_model_as_a_tool_message_with_the_reason(
        world: tuple[Gate, Desk, list[str]]) -> None:
    gate, desk, ran = world
    agent = billing_agent(gate, ran, turn(PAY, ("drop_table", {"name": "users"}, "dt-1")))
    first = start(agent)
    [paused] = first.interrupts  # the policy refused drop_table without asking anyone
    desk.deny(paused.value["interlock_request_id"], "over this month's budget")
    command = resume_command(gate, first.interrupts)
    assert isinstance(command.resume, dict)
    assert command.resume[paused.id]["type"] == "reject"
    done = go_on(agent, command)
    assert ran == []
    messages = tool_messages(done.value["messages"])
    assert messages["pay-1"].status == "error"
    assert "over this month's budget" in str(messages["pay-1"].content)
    assert "rule never-drop" in str(messages["dt-1"].content)


def test_the_async_graph_takes_the_same_path(world: tuple[Gate, Desk, list[str]]) -> None:
    gate, desk, ran = world
    agent = billing_agent(gate, ran, turn(PAY))
    config = {"configurable": {"thread_id": "a1"}}

    async def main() -> Any:
        first = await agent.ainvoke({"messages": [HumanMessage("go")]}, config, version="v2")
        desk.approve(first.interrupts[0].value["interlock_request_id"],
                     args={"to": "acme", "amount": 900})
        return await agent.ainvoke(resume_command(gate, first.interrupts), config,
                                   version="v2")

    done = asyncio.run(main())
    assert ran == ["send_payment acme 900"]
    assert not done.interrupts


def test_the_docs_example_runs(tmp_path: Path) -> None:
    out = run_doc_example(DOC, tmp_path, timeout=60)
    assert "waiting for a reviewer: send_payment" in out
    assert "sent 900 EUR to acme" in out
    assert "over budget" in out
