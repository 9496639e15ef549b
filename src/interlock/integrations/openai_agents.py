"""OpenAI Agents SDK: `needs_approval` backed by interlock's policy, and interruptions resolved
from interlock's decisions, in this process or in another one from the serialized run state.

    from interlock.integrations.openai_agents import gated, resolve

    agent = Agent(name="billing", tools=gated(gate, [send_payment, read_balance]))
    result = await Runner.run(agent, "pay acme 12000")
    if result.interruptions:                      # a payment waits for people
        saved = result.to_state().to_json()       # keep it anywhere; the process may exit
        ...
        state = await RunState.from_json(agent, saved)
        await resolve(gate, state)                # approve / reject from interlock's decisions
        result = await Runner.run(agent, state)

A gated tool runs only after interlock allowed or approved its call and the tool claimed it,
exactly once, with the final arguments (a reviewer's edits applied); a refusal reaches the
model as the tool's output, with the reason.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from agents import Agent, FunctionTool, RunContextWrapper, Runner, RunResult, RunState, Tool
from agents.items import ToolApprovalItem
from agents.tool_context import ToolContext

from interlock.sdk import Action, Gate, Signal
from interlock.sdk.client import Snapshot
from interlock.sdk.signals import BY_STATE, AlreadyClaimed, Cancelled

__all__ = ["gated", "resolve", "resume"]

CLAIMABLE = frozenset({"allowed", "notified", "approved"})
#: Seconds one wait call blocks before checking the caller's timeout again.
WAIT_SLICE = 30.0
#: How an `Action` is built for a call: (tool name, args) -> Action.
ActionFactory = Callable[[str, dict[str, Any]], Action]


def gated(gate: Gate, tools: Sequence[Tool], *,
          action: ActionFactory | None = None) -> list[Tool]:
    """The same tools with interlock in front of each function tool: `needs_approval` asks the
    policy (a call waiting for people interrupts the run), and invoking the tool claims its
    request and runs it with the final arguments. Other kinds of tools pass unchanged.
    `action(name, args)` may build the Action (capabilities, preview, summary)."""
    out: list[Tool] = []
    for tool in tools:
        out.append(_gate_tool(gate, tool, action) if isinstance(tool, FunctionTool) else tool)
    return out


async def resolve(gate: Gate, state: RunState[Any, Any], *, wait: bool = True,
                  timeout: float | None = None) -> list[ToolApprovalItem]:
    """Approve or reject each of the run's interruptions as interlock decided it: approved
    calls are approved (the tool claims them when the run resumes), refused ones rejected
    with the reviewer's reason as the message the model reads. Waits for people unless
    `wait=False`; returns the interruptions still undecided (left as they are)."""
    undecided = []
    for item in state.get_interruptions():
        name, call_id = item.name or "", item.call_id or ""
        args = _args(item.arguments)
        snap = await asyncio.to_thread(_decided, gate, _body(gate, name, args, call_id, None),
                                       wait, timeout)
        if snap.state == "pending":
            undecided.append(item)
        elif snap.state in CLAIMABLE:
            state.approve(item)
        else:
            state.reject(item, rejection_message=str(_signal(snap)))
    return undecided


async def resume(gate: Gate, agent: Agent[Any], saved: dict[str, Any] | str, *,
                 timeout: float | None = None, **run: Any) -> RunResult:
    """Continue a run paused for approval from its serialized state (`to_json()` or
    `to_string()`), in any process: wait for interlock's decisions, apply them, run on.
    `run` is passed to `Runner.run` (context, max_turns, run_config...)."""
    if isinstance(saved, str):
        state = await RunState.from_string(agent, saved)
    else:
        state = await RunState.from_json(agent, saved)
    await resolve(gate, state, timeout=timeout)
    return await Runner.run(agent, state, **run)


def _gate_tool(gate: Gate, tool: FunctionTool, factory: ActionFactory | None) -> FunctionTool:
    invoke = tool.on_invoke_tool

    async def needs_approval(ctx: RunContextWrapper[Any], params: dict[str, Any],
                             call_id: str) -> bool:
        body = _body(gate, tool.name, dict(params), call_id, factory)
        snap = await asyncio.to_thread(_decided, gate, body, False, None)
        # Only a call waiting for people interrupts; a refusal is told to the model by
        # the tool itself, with the reason, without asking anyone.
        return snap.state == "pending"

    async def on_invoke(ctx: ToolContext[Any], input_json: str) -> Any:
        args = _args(input_json)
        body = _body(gate, tool.name, args, ctx.tool_call_id, factory)
        snap = await asyncio.to_thread(_decided, gate, body, False, None)
        if snap.state not in CLAIMABLE:
            return str(_signal(snap))
        try:
            resumed = await asyncio.to_thread(gate.resume, snap.id, wait=False)
        except Signal as signal:
            return str(signal)
        final = input_json
        if resumed.args != args:
            final = json.dumps(resumed.args)
            # The SDK keeps arguments it validated before approval; they are not the
            # ones a reviewer approved, so let the tool parse the final ones.
            if hasattr(ctx, "_function_tool_arguments"):
                ctx._function_tool_arguments = None
        try:
            result = await invoke(ctx, final)
        except BaseException as exc:
            await asyncio.to_thread(gate.report, snap.id, "failed",
                                    f"{type(exc).__name__}: {exc}"[:2000])
            raise
        await asyncio.to_thread(gate.report, snap.id, "succeeded", None)
        return result

    return dataclasses.replace(tool, needs_approval=needs_approval, on_invoke_tool=on_invoke)


def _decided(gate: Gate, body: dict[str, Any], wait: bool, timeout: float | None) -> Snapshot:
    """Submit (the same call finds its request again) and, with `wait`, wait for people."""
    snap = gate.client.submit(body)
    if snap.state == "pending":
        snap = gate.client.wait(snap.id, 0.0)  # one look: an embedded channel may decide now
    deadline = None if timeout is None else time.monotonic() + timeout
    while wait and snap.state == "pending":
        remaining = WAIT_SLICE if deadline is None else deadline - time.monotonic()
        if remaining <= 0:
            break
        snap = gate.client.wait(snap.id, min(remaining, WAIT_SLICE))
    return snap


def _body(gate: Gate, name: str, args: dict[str, Any], call_id: str,
          factory: ActionFactory | None) -> dict[str, Any]:
    action = factory(name, args) if factory is not None else Action(action=name, args=args)
    body = action.to_json()
    if gate.agent is not None:
        body.setdefault("agent", gate.agent)
    raw = json.dumps([call_id, name, args], sort_keys=True, default=str)
    body.setdefault("idempotency_key",
                    "openai-agents:" + hashlib.sha256(raw.encode()).hexdigest()[:32])
    return body


def _args(arguments: str | None) -> dict[str, Any]:
    try:
        parsed = json.loads(arguments or "{}")
    except ValueError:
        return {"arguments": arguments}
    return parsed if isinstance(parsed, dict) else {"arguments": parsed}


def _signal(snap: Snapshot) -> Signal:
    kind = BY_STATE.get(snap.state, Cancelled)
    if kind is AlreadyClaimed:
        return kind(request_id=snap.id, action=snap.action)
    return kind(request_id=snap.id, action=snap.action,
                reason=snap.reason or "; ".join(snap.reasons))
