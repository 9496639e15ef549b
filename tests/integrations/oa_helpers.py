"""Shared pieces of the OpenAI Agents SDK tests: the policy, tools, and a scripted model."""

from __future__ import annotations

from typing import Any

from agents import Agent, FunctionTool, function_tool, set_tracing_disabled
from agents.testing import ModelCall, ModelStep, ScriptedModel, assistant_message, function_call
from review_desk import RITA, Desk  # noqa: F401  (the tests import them from here)

from interlock import Gate
from interlock.integrations.openai_agents import gated

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
