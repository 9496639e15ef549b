"""Shared pieces of the LangGraph tests: the policy, tools, and a fake chat model with tools."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver

from interlock import Gate
from interlock.gateway import Gateway, Principal
from interlock.integrations.langgraph import InterlockMiddleware
from interlock.policy import load_policy
from interlock.store import Request, State, open_store

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

RITA = Principal(role="reviewer", name="rita", groups=("finance",))


class Desk:
    """The reviewers' side: a gateway on the same database, as `interlock serve` would be."""

    def __init__(self, policy: Path, db: str) -> None:
        self.store = open_store(db)
        self.gateway = Gateway(load_policy(policy), self.store)

    def get(self, request_id: str) -> Request:
        return self.store.get(request_id)

    def pending(self) -> list[str]:
        return [r.id for r in self.store.list_requests(state=State.PENDING)]

    def approve(self, request_id: str, args: dict[str, Any] | None = None) -> None:
        self.gateway.decide(request_id, RITA, "approve", note="ok", args=args)

    def deny(self, request_id: str, reason: str) -> None:
        self.gateway.decide(request_id, RITA, "deny", note=reason)

    def close(self) -> None:
        self.store.close()


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
