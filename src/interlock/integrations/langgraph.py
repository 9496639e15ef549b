"""LangGraph / LangChain v1: a human-in-the-loop middleware whose decisions are interlock's.

Each tool call an agent makes is submitted to interlock; a call waiting for people pauses the
graph with LangGraph's `interrupt()` (a `tool_approval` value, as LangChain's own
human-in-the-loop middleware raises in `per_call` mode, plus the interlock request id). Once
reviewers decided, `resume_command` gives the `Command(resume=...)` that continues the graph:
approved calls run (with a reviewer's edits), refused ones answer the model with the reason.

    from interlock.integrations.langgraph import InterlockMiddleware, resume_command

    agent = create_agent(model, tools=[pay], middleware=[InterlockMiddleware(gate)],
                         checkpointer=InMemorySaver())
    result = agent.invoke({"messages": [...]}, config, version="v2")
    if result.interrupts:                                  # a payment waits for people
        agent.invoke(resume_command(gate, result.interrupts), config, version="v2")

interlock stays the authority: whatever value the graph is resumed with, a call runs only
after interlock allowed or approved it and the middleware claimed it, exactly once.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Literal, TypedDict

from langchain.agents.middleware import AgentMiddleware
from langchain.agents.middleware.types import ToolCallRequest
from langchain_core.messages import ToolCall, ToolMessage
from langgraph.types import Command, Interrupt, interrupt

from interlock.sdk import Action, Gate, Signal
from interlock.sdk.client import Snapshot
from interlock.sdk.signals import BY_STATE, AlreadyClaimed, Cancelled

__all__ = ["InterlockApprovalRequest", "InterlockMiddleware", "resume_command"]

CLAIMABLE = frozenset({"allowed", "notified", "approved"})
#: Seconds one wait call blocks before checking the caller's timeout again.
WAIT_SLICE = 30.0
#: Told to the model when a reviewer changed the call before it ran.
EDIT_NOTICE = ("Note: a reviewer changed this tool call in interlock before it ran; it ran "
               "with the arguments {args}, not the ones you proposed. Do not re-issue it.")
#: How an `Action` is built for a tool call: (tool name, args) -> Action.
ActionFactory = Callable[[str, dict[str, Any]], Action]


class InterlockApprovalRequest(TypedDict):
    """The interrupt value for a call waiting for people: LangChain's `tool_approval`
    shape, plus interlock's request id and reasons."""

    type: Literal["tool_approval"]
    tool_call_id: str
    name: str
    args: dict[str, Any]
    description: str
    interlock_request_id: str
    """The interlock request reviewers decide."""
    reasons: list[str]
    """Why the policy gated it, in plain words."""


class InterlockMiddleware(AgentMiddleware[Any, Any]):
    """interlock decides every tool call: allowed ones run, refused ones answer the model with
    the reason, the rest pause the graph until reviewers decide in interlock."""

    def __init__(self, gate: Gate, *, action: ActionFactory | None = None,
                 wait: float = 0.0) -> None:
        super().__init__()
        self.gate = gate
        """The gate that decides, embedded or remote."""
        self.action = action
        """Builds the Action for a call (capabilities, preview, summary); default: the tool
        name as `action` and the call's arguments as `args`."""
        self.wait = wait
        """Seconds to wait for people inside the run before pausing the graph."""

    def wrap_tool_call(
        self, request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], ToolMessage | Command[Any]],
    ) -> ToolMessage | Command[Any]:
        call = request.tool_call
        snap = _decided(self.gate, self._body(request), self.wait)
        while snap.state == "pending":
            interrupt(_approval_request(call, snap))
            # Resumed: whatever the resume value says, interlock's stored decision counts.
            snap = _decided(self.gate, self._body(request), 0.0)
        if snap.state not in CLAIMABLE:
            return _refusal(call, _signal(snap))
        try:
            resumed = self.gate.resume(snap.id, wait=False)
        except Signal as signal:
            return _refusal(call, signal)
        to_run, edited = _with_args(request, resumed.args)
        try:
            result = handler(to_run)
        except BaseException as exc:
            self.gate.report(snap.id, "failed", f"{type(exc).__name__}: {exc}"[:2000])
            raise
        self.gate.report(snap.id, *_outcome(result))
        return _noted(result, resumed.args) if edited else result

    async def awrap_tool_call(
        self, request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], Awaitable[ToolMessage | Command[Any]]],
    ) -> ToolMessage | Command[Any]:
        call = request.tool_call
        snap = await asyncio.to_thread(_decided, self.gate, self._body(request), self.wait)
        while snap.state == "pending":
            interrupt(_approval_request(call, snap))
            snap = await asyncio.to_thread(_decided, self.gate, self._body(request), 0.0)
        if snap.state not in CLAIMABLE:
            return _refusal(call, _signal(snap))
        try:
            resumed = await asyncio.to_thread(self.gate.resume, snap.id, wait=False)
        except Signal as signal:
            return _refusal(call, signal)
        to_run, edited = _with_args(request, resumed.args)
        try:
            result = await handler(to_run)
        except BaseException as exc:
            await asyncio.to_thread(self.gate.report, snap.id, "failed",
                                    f"{type(exc).__name__}: {exc}"[:2000])
            raise
        await asyncio.to_thread(self.gate.report, snap.id, *_outcome(result))
        return _noted(result, resumed.args) if edited else result

    def _body(self, request: ToolCallRequest) -> dict[str, Any]:
        call = request.tool_call
        args = dict(call["args"])
        action = (self.action(call["name"], args) if self.action is not None
                  else Action(action=call["name"], args=args))
        body = action.to_json()
        if self.gate.agent is not None:
            body.setdefault("agent", self.gate.agent)
        config = getattr(request.runtime, "config", None) or {}
        thread = (config.get("configurable") or {}).get("thread_id")
        # The node runs again on resume: the same call must find the same request.
        raw = json.dumps([thread, call.get("id"), call["name"], args], sort_keys=True,
                         default=str)
        body.setdefault("idempotency_key",
                        "langgraph:" + hashlib.sha256(raw.encode()).hexdigest()[:32])
        return body


def resume_command(gate: Gate, interrupts: Iterable[Interrupt], *, wait: bool = True,
                   timeout: float | None = None) -> Command[Any]:
    """The `Command(resume=...)` that continues a graph paused by `InterlockMiddleware`,
    once interlock decided its calls (waits for people unless `wait=False`; `timeout` bounds
    the wait). Each interrupt is answered with interlock's decision in LangChain's terms
    (`approve`, `edit` is applied from interlock when the call runs, `reject` with the
    reason); a call still undecided is answered too, and pauses the graph again."""
    deadline = None if timeout is None else time.monotonic() + timeout
    answers: dict[str, Any] = {}
    for item in interrupts:
        value = item.value
        if not isinstance(value, Mapping) or "interlock_request_id" not in value:
            continue  # another middleware's interrupt: not interlock's to answer
        snap = gate.client.get(str(value["interlock_request_id"]))
        while wait and snap.state == "pending":
            remaining = WAIT_SLICE if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                break
            snap = gate.client.wait(snap.id, min(remaining, WAIT_SLICE))
        if snap.state in CLAIMABLE:
            answers[item.id] = {"type": "approve"}
        elif snap.state == "pending":
            answers[item.id] = {"type": "pending"}
        else:
            answers[item.id] = {"type": "reject", "message": str(_signal(snap))}
    return Command(resume=answers)


def _decided(gate: Gate, body: dict[str, Any], wait: float) -> Snapshot:
    snap = gate.client.submit(body)
    if snap.state == "pending":
        snap = gate.client.wait(snap.id, wait)  # an embedded channel may decide at once
    return snap


def _approval_request(call: ToolCall, snap: Snapshot) -> InterlockApprovalRequest:
    return InterlockApprovalRequest(
        type="tool_approval", tool_call_id=str(call.get("id") or ""), name=call["name"],
        args=dict(call["args"]),
        description=f"interlock request {snap.id} waits for a reviewer: "
                    + ("; ".join(snap.reasons) or "policy"),
        interlock_request_id=snap.id, reasons=list(snap.reasons),
    )


def _refusal(call: ToolCall, signal: Signal) -> ToolMessage:
    return ToolMessage(content=str(signal), name=call["name"],
                       tool_call_id=str(call.get("id") or ""), status="error")


def _with_args(request: ToolCallRequest, args: dict[str, Any]) -> tuple[ToolCallRequest, bool]:
    if args == request.tool_call["args"]:
        return request, False
    return request.override(tool_call={**request.tool_call, "args": args}), True


def _noted(result: ToolMessage | Command[Any], args: dict[str, Any]) -> ToolMessage | Command[Any]:
    if not isinstance(result, ToolMessage) or not isinstance(result.content, str):
        return result
    notice = EDIT_NOTICE.format(args=json.dumps(args, default=str))
    return result.model_copy(update={"content": f"{notice}\n\n{result.content}"})


def _outcome(result: ToolMessage | Command[Any]) -> tuple[Literal["succeeded", "failed"],
                                                          str | None]:
    if isinstance(result, ToolMessage) and result.status == "error":
        return "failed", str(result.content)[:2000]
    return "succeeded", None


def _signal(snap: Snapshot) -> Signal:
    kind = BY_STATE.get(snap.state, Cancelled)
    if kind is AlreadyClaimed:
        return kind(request_id=snap.id, action=snap.action)
    return kind(request_id=snap.id, action=snap.action,
                reason=snap.reason or "; ".join(snap.reasons))
