"""Shared pieces of the OpenAI Agents SDK tests: the policy, tools, and a scripted model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agents import Agent, FunctionTool, function_tool, set_tracing_disabled
from agents.testing import ModelCall, ModelStep, ScriptedModel, assistant_message, function_call

from interlock import Gate
from interlock.gateway import Gateway, Principal
from interlock.integrations.openai_agents import gated
from interlock.policy import load_policy
from interlock.store import Request, State, open_store

# Traces would be exported to OpenAI's servers: no network in the tests.
set_tracing_disabled(True)

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

    def only_pending(self) -> str:
        [request] = self.store.list_requests(state=State.PENDING)
        return request.id

    def approve(self, request_id: str, args: dict[str, Any] | None = None) -> None:
        self.gateway.decide(request_id, RITA, "approve", note="ok", args=args)

    def deny(self, request_id: str, reason: str) -> None:
        self.gateway.decide(request_id, RITA, "deny", note=reason)

    def close(self) -> None:
        self.store.close()


def echo(call: ModelCall) -> Any:
    """The model's last turn: repeat what the tools answered."""
    outputs = [item["output"] for item in call.input
               if isinstance(item, dict) and item.get("type") == "function_call_output"]
    return [assistant_message(" | ".join(str(o) for o in outputs))]


def calls(*specs: tuple[str, dict[str, Any], str]) -> ModelStep:
    """One model turn making these (name, args, call_id) tool calls."""
    return ModelStep(output=[function_call(name, args, call_id=cid) for name, args, cid in specs])


def tools(ran: list[str]) -> list[FunctionTool]:
    @function_tool
    def read_balance(account: str) -> str:
        """Read an account's balance."""
        ran.append(f"read_balance {account}")
        return f"{account}: 420 EUR"

    @function_tool
    def send_payment(to: str, amount: float) -> str:
        """Send a payment."""
        ran.append(f"send_payment {to} {amount:g}")
        return f"sent {amount:g} EUR to {to}"

    @function_tool
    def drop_table(name: str) -> str:
        """Drop a table."""
        ran.append(f"drop_table {name}")
        return "dropped"

    return [read_balance, send_payment, drop_table]


def billing_agent(gate: Gate, ran: list[str], *steps: Any) -> Agent[Any]:
    model = ScriptedModel([*steps, ModelStep.respond(echo)])
    return Agent(name="billing", model=model, tools=gated(gate, tools(ran)))
