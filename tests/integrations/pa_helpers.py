"""Shared pieces of the Pydantic AI tests: the policy, a reviewer desk, a scripted model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel

from interlock.gateway import Gateway, Principal
from interlock.policy import load_policy
from interlock.store import Request, open_store

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

    def approve(self, request_id: str, args: dict[str, Any] | None = None) -> None:
        self.gateway.decide(request_id, RITA, "approve", note="ok", args=args)

    def deny(self, request_id: str, reason: str) -> None:
        self.gateway.decide(request_id, RITA, "deny", note=reason)

    def close(self) -> None:
        self.store.close()


def scripted(*calls: ToolCallPart) -> FunctionModel:
    """A model that makes `calls` in its first turn, then repeats what the tools returned."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        returns = [part for message in messages if isinstance(message, ModelRequest)
                   for part in message.parts if isinstance(part, ToolReturnPart)]
        if not returns:
            return ModelResponse(parts=list(calls))
        return ModelResponse(parts=[TextPart(" | ".join(
            f"{r.tool_name}: {r.model_response_str()}" for r in returns))])

    return FunctionModel(respond)


def tool_returns(messages: list[ModelMessage]) -> Iterator[ToolReturnPart]:
    for message in messages:
        if isinstance(message, ModelRequest):
            yield from (p for p in message.parts if isinstance(p, ToolReturnPart))
