"""What a notification says: one `Notice` per audit event that needs a person.

Built from the request when the event is read, stored with each delivery, and rendered as
plain text (Apprise), JSON (webhooks) or Slack blocks. Agent-written fields are data.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any, Literal

NoticeKind = Literal["approval_needed", "escalated", "expired"]

_HEADLINE: dict[NoticeKind, str] = {
    "approval_needed": "Approval needed",
    "escalated": "Escalated: approval needed",
    "expired": "Expired without a decision",
}

#: Characters of agent-written text a notice carries at most, per field.
MAX_FIELD = 200


@dataclass(frozen=True, kw_only=True)
class Notice:
    """One event a person should hear about."""

    id: str
    """Stable per event (`audit:SEQ`); receivers may drop a repeated id."""
    kind: NoticeKind
    """approval_needed / escalated / expired."""
    request_id: str
    """The request concerned."""
    action: str
    """The action's name, as the agent proposed it."""
    agent: str
    """The proposing agent."""
    environment: str | None
    """The action's environment, if given."""
    risk: str
    """low / medium / high."""
    deadline: float | None
    """When the request times out (None once it has ended)."""
    approvers: tuple[str, ...]
    """Groups (and `user:NAME`) who may decide it now."""
    link: str
    """The request's review page."""
    confirm: bool
    """Whether approving needs the typed confirmation phrase (no chat button can carry it)."""
    digest: str
    """The request's digest when the notice was built; a button approves only this."""
    reason: str | None = None
    """Why it ended (expiry)."""
    at: float
    """When the event happened."""

    def to_json(self) -> dict[str, Any]:
        """The notice as a JSON object (the webhook body's `notice`)."""
        data = asdict(self)
        data["approvers"] = list(self.approvers)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Notice:
        return cls(**{**data, "approvers": tuple(data["approvers"])})

    @property
    def title(self) -> str:
        """One line: what happened and to which action."""
        return f"interlock: {_HEADLINE[self.kind]}: {clip(self.action)}"

    def text(self) -> str:
        """Plain text naming the action, risk, agent, deadline and the page."""
        lines = [
            f"{_HEADLINE[self.kind]}: `{clip(self.action)}`"
            + (f" in {clip(self.environment)}" if self.environment else ""),
            f"Agent: {clip(self.agent)}",
            f"Risk: {self.risk}",
            f"Approvers: {', '.join(self.approvers) or '-'}",
        ]
        if self.deadline is not None:
            lines.append(f"Deadline: {iso(self.deadline)}")
        if self.reason:
            lines.append(f"Reason: {clip(self.reason)}")
        if self.confirm:
            lines.append("Approving needs the typed confirmation on the review page.")
        lines.append(f"Review: {self.link}")
        return "\n".join(lines)


def clip(text: str | None, limit: int = MAX_FIELD) -> str:
    """Agent text on one line, without control characters, at most `limit` characters."""
    flat = "".join(c if c.isprintable() else " " for c in (text or ""))
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def iso(when: float) -> str:
    """A time as ISO 8601 in UTC, to the second."""
    return dt.datetime.fromtimestamp(when, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
