"""Pydantic AI: a wrapper toolset that lets interlock decide every tool call of an agent.

Allowed calls run at once; gated ones raise `ApprovalRequired` and come back as the run's
`DeferredToolRequests`; `deferred_results` turns interlock's decisions into the
`DeferredToolResults` (approve, deny with the reason, override args) the next run takes.

    from interlock.integrations.pydantic_ai import InterlockToolset, deferred_results

    agent = Agent(model, toolsets=[InterlockToolset(FunctionToolset([pay]), gate=gate)],
                  output_type=[str, DeferredToolRequests])
    result = await agent.run("pay acme 12000")
    if isinstance(result.output, DeferredToolRequests):       # a payment waits for people
        results = await deferred_results(gate, result.output)   # reviewers decide in interlock
        result = await agent.run(message_history=result.all_messages(),
                                 deferred_tool_results=results)

interlock stays the authority: a call runs only after interlock allowed or approved it and
this toolset (or `deferred_results`) claimed it, exactly once, with the final arguments.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic_ai import RunContext
from pydantic_ai.exceptions import ApprovalRequired
from pydantic_ai.tools import (
    DeferredToolRequests,
    DeferredToolResults,
    ToolApproved,
    ToolDefinition,
    ToolDenied,
)
from pydantic_ai.toolsets import WrapperToolset
from pydantic_ai.toolsets.abstract import ToolsetTool

from interlock.sdk import Action, Gate, Signal, StillPending
from interlock.sdk.client import Snapshot
from interlock.sdk.signals import BY_STATE, AlreadyClaimed, Cancelled

__all__ = ["METADATA_KEY", "InterlockToolset", "deferred_results"]

#: The key under which deferred-call metadata carries interlock's request id.
METADATA_KEY = "interlock"
CLAIMABLE = frozenset({"allowed", "notified", "approved"})
#: How an `Action` is built for a tool call: (tool name, args, tool definition) -> Action.
ActionFactory = Callable[[str, dict[str, Any], ToolDefinition], Action]


@dataclass
class InterlockToolset(WrapperToolset[Any]):
    """Wraps a toolset: each call is submitted to interlock and runs only when allowed or
    approved; a call waiting for people raises `ApprovalRequired` (its metadata carries the
    request id); a refusal goes back to the model as the tool's result, with the reason."""

    gate: Gate = field(kw_only=True)
    """The gate that decides, embedded or remote."""
    action: ActionFactory | None = field(default=None, kw_only=True)
    """Builds the Action for a call (capabilities, preview, summary); default: the tool name
    as `action` and the call's arguments as `args`."""

    async def call_tool(
        self, name: str, tool_args: dict[str, Any], ctx: RunContext[Any],
        tool: ToolsetTool[Any],
    ) -> Any:
        claimed = _claimed_request(ctx)
        if claimed is not None:
            # `deferred_results` claimed it; tool_args already carry a reviewer's edits.
            return await self._run(claimed, name, tool_args, ctx, tool)
        body = self._body(name, tool_args, ctx, tool.tool_def)
        client = self.gate.client
        snap = await asyncio.to_thread(client.submit, body)
        if snap.state == "pending":
            snap = await asyncio.to_thread(client.wait, snap.id, 0.0)  # an embedded channel
        if snap.state == "pending":
            raise ApprovalRequired(metadata={METADATA_KEY: {"request_id": snap.id}})
        if snap.state not in CLAIMABLE:
            return str(_signal(snap))
        try:
            resumed = await asyncio.to_thread(self.gate.resume, snap.id, wait=False)
        except Signal as signal:
            return str(signal)
        return await self._run(snap.id, name, resumed.args, ctx, tool)

    async def _run(self, request_id: str, name: str, args: dict[str, Any], ctx: RunContext[Any],
                   tool: ToolsetTool[Any]) -> Any:
        try:
            result = await super().call_tool(name, args, ctx, tool)
        except BaseException as exc:
            await asyncio.to_thread(self.gate.report, request_id, "failed",
                                    f"{type(exc).__name__}: {exc}"[:2000])
            raise
        await asyncio.to_thread(self.gate.report, request_id, "succeeded", None)
        return result

    def _body(self, name: str, args: dict[str, Any], ctx: RunContext[Any],
              tool_def: ToolDefinition) -> dict[str, Any]:
        action = (self.action(name, args, tool_def) if self.action is not None
                  else Action(action=name, args=dict(args)))
        body = action.to_json()
        if self.gate.agent is not None:
            body.setdefault("agent", self.gate.agent)
        # The same call, re-run after a pause, finds its request again instead of a new one.
        body.setdefault("idempotency_key", _key(ctx.tool_call_id, name, args))
        return body


async def deferred_results(
    gate: Gate, requests: DeferredToolRequests, *, wait: bool = True,
    timeout: float | None = None,
) -> DeferredToolResults:
    """interlock's decisions on the calls an `InterlockToolset` deferred, as the
    `DeferredToolResults` the next run takes: approved calls are claimed here (exactly once)
    and come back as `ToolApproved`, with `override_args` when a reviewer edited them;
    refused ones as `ToolDenied` with the reviewer's reason. With `wait=False`, calls nobody
    decided yet are left out (ask again later); `timeout` bounds the wait per call."""
    results = DeferredToolResults()
    for call in requests.approvals:
        meta = requests.metadata.get(call.tool_call_id) or {}
        request_id = (meta.get(METADATA_KEY) or {}).get("request_id")
        if not isinstance(request_id, str):
            continue  # deferred by some other toolset: not interlock's to answer
        try:
            resumed = await asyncio.to_thread(gate.resume, request_id, wait=wait,
                                              timeout=timeout)
        except StillPending:
            continue
        except Signal as signal:
            results.approvals[call.tool_call_id] = ToolDenied(str(signal))
            continue
        edited = resumed.args != call.args_as_dict()
        results.approvals[call.tool_call_id] = ToolApproved(
            override_args=resumed.args if edited else None)
        results.metadata[call.tool_call_id] = {
            METADATA_KEY: {"request_id": request_id, "claimed": True}}
    return results


def _claimed_request(ctx: RunContext[Any]) -> str | None:
    """The request `deferred_results` claimed for this call, if it did."""
    if not ctx.tool_call_approved or not isinstance(ctx.tool_call_metadata, Mapping):
        return None
    meta = ctx.tool_call_metadata.get(METADATA_KEY)
    if isinstance(meta, Mapping) and meta.get("claimed") and isinstance(
            meta.get("request_id"), str):
        return str(meta["request_id"])
    return None


def _signal(snap: Snapshot) -> Signal:
    kind = BY_STATE.get(snap.state, Cancelled)
    if kind is AlreadyClaimed:
        return kind(request_id=snap.id, action=snap.action)
    return kind(request_id=snap.id, action=snap.action,
                reason=snap.reason or "; ".join(snap.reasons))


def _key(call_id: str | None, name: str, args: dict[str, Any]) -> str:
    # Not the run id: the run that continues after a pause is a new run with the same calls.
    raw = json.dumps([call_id, name, args], sort_keys=True, default=str)
    return "pydantic-ai:" + hashlib.sha256(raw.encode()).hexdigest()[:32]
