"""Shared pieces of the Pydantic AI tests: the policy, a reviewer desk, a scripted model."""

from __future__ import annotations

from collections.abc import Iterator

from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from review_desk import RITA, Desk  # noqa: F401  (the tests import them from here)

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
