"""Shared pieces of the LangGraph tests: the policy, tools, and a fake chat model with tools."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from review_desk import RITA, Desk  # noqa: F401  (the tests import them from here)

from interlock import Gate
from interlock.integrations.langgraph import InterlockMiddleware

POLICY = """\
version: 1
defaults: {decision: allow, approvers: [ops]}
limits: {pending_per_agent: 1000, actions_per_minute: 100000}
rules:
  - name: payments
    match: {action: send_payment}
    decision: require_approval
    approvers: [finance]
  - name: never-drop
    match: {action: drop_table}
    decision: deny
"""





class ToolCallingFake(GenericFakeChatModel):
    """LangChain's fake chat model, scripted with AIMessages that carry tool calls.
    Binding tools changes nothing: the script already says which calls to make."""

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
        return self


def turn(*calls: tuple[str, dict[str, Any], str]) -> AIMessage:
    return AIMessage(content="", tool_calls=[
        {"name": name, "args": args, "id": cid, "type": "tool_call"} for name, args, cid in calls])


def billing_agent(gate: Gate, ran: list[str], *turns: AIMessage) -> Any:
    @tool
    def read_balance(account: str) -> str:
        """Read an account's balance."""
        ran.append(f"read_balance {account}")
        return f"{account}: 420 EUR"

    @tool
    def send_payment(to: str, amount: float) -> str:
        """Send a payment."""
        ran.append(f"send_payment {to} {amount:g}")
        return f"sent {amount:g} EUR to {to}"

    @tool
    def drop_table(name: str) -> str:
        """Drop a table."""
        ran.append(f"drop_table {name}")
        return "dropped"

    model = ToolCallingFake(messages=iter([*turns, AIMessage(content="done")]))
    return create_agent(model, tools=[read_balance, send_payment, drop_table],
                        middleware=[InterlockMiddleware(gate)], checkpointer=InMemorySaver())


def tool_messages(messages: Sequence[BaseMessage]) -> dict[str, ToolMessage]:
    """The tool messages the model reads next, by tool call id."""
    return {m.tool_call_id: m for m in messages if isinstance(m, ToolMessage)}
