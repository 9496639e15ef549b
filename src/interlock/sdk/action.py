"""What an agent proposes (`Action`) and what it keeps across a pause (`Ticket`, `Resumed`).

Everything here round-trips through JSON; `Ticket` and `Resumed` carry a format version.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal

PreviewKind = Literal["diff", "sql", "email", "text", "json"]
RiskHint = Literal["low", "medium", "high"]

#: Version of the JSON form of `Ticket` and `Resumed`; bump on an incompatible change.
FORMAT = 1


@dataclass(kw_only=True)
class Action:
    """An action an agent proposes (SPEC §1). Only `action` is required."""

    action: str
    """Tool or operation name, e.g. `deploy`, `db.delete_rows`."""
    args: dict[str, Any] = field(default_factory=dict)
    """The arguments it would run with."""
    agent: str | None = None
    """The agent's name; must match its token (embedded: the Gate's agent)."""
    environment: str | None = None
    """E.g. `production`; filled from `args.environment` when absent."""
    capabilities: list[str] = field(default_factory=list)
    """E.g. `["payment"]`."""
    reason: str | None = None
    """Why the agent wants it, shown to reviewers."""
    context: dict[str, Any] | None = None
    """`run_id`, `plan_step`, `plan_total`, `history`, `summary`."""
    confidence: float | None = None
    """The agent's own certainty, 0..1."""
    alternatives: list[str] | None = None
    """Other ways the agent considered."""
    preview: dict[str, Any] | None = None
    """The computed effect: `{"kind": "diff"|"sql"|"email"|"text"|"json", "content": ...}`."""
    affected_records: int | None = None
    """How many records it touches; filled from `args.affected_records` when absent."""
    amount: float | None = None
    """A sum of money; filled from `args.amount` when absent."""
    currency: str | None = None
    """The amount's currency; filled from `args.currency` when absent."""
    recipients: list[str] | None = None
    """Who it reaches; filled from `args.recipients` when absent."""
    risk: RiskHint | None = None
    """A hint that can raise the policy's risk class, never lower it."""
    idempotency_key: str | None = None
    """The same key returns the same request; the SDK sets one when absent."""
    batch_id: str | None = None
    """Groups related actions a reviewer can decide at once."""
    revision_of: str | None = None
    """The request this one revises (after ChangesRequested)."""
    checkpoint: Any = None
    """Opaque JSON returned by `Gate.resume`, to pick a run up where it paused."""

    def to_json(self) -> dict[str, Any]:
        """The body `POST /v1/actions` takes: every field that is set."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or (f.name == "capabilities" and not value):
                continue
            out[f.name] = value
        out.setdefault("args", {})
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Action:
        """An Action from its JSON form; unknown keys are refused."""
        known = {f.name for f in fields(cls)}
        extra = sorted(set(data) - known)
        if extra:
            raise ValueError(f"unknown action fields: {', '.join(extra)}")
        return cls(**data)


@dataclass(frozen=True, kw_only=True)
class Ticket:
    """A submitted request, as `Gate.submit`, `Gate.batch` and `Gate.pending` return it."""

    id: str
    """The request id: pass it to `Gate.resume` in any later process."""
    action: str
    """The action name."""
    decision: str
    """The policy's decision: allow, notify, require_approval, suggest or deny."""
    state: str
    """The request's state when this ticket was made (SPEC §4)."""
    reasons: tuple[str, ...] = ()
    """The policy's reasons, in plain words."""
    rules: tuple[str, ...] = ()
    """The rules that decided it."""
    risk: str = "medium"
    """Risk class."""
    version: int = 0
    """The request's version."""
    reason: str | None = None
    """Why it ended where it is (a deny's note), if it has."""
    batch_id: str | None = None
    """Its batch, if any."""

    def to_json(self) -> dict[str, Any]:
        """A versioned JSON form, to keep across a pause."""
        return {
            "format": FORMAT, "id": self.id, "action": self.action, "decision": self.decision,
            "state": self.state, "reasons": list(self.reasons), "rules": list(self.rules),
            "risk": self.risk, "version": self.version, "reason": self.reason,
            "batch_id": self.batch_id,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Ticket:
        _check_format(data)
        return cls(
            id=str(data["id"]), action=str(data["action"]), decision=str(data["decision"]),
            state=str(data["state"]), reasons=tuple(data.get("reasons") or ()),
            rules=tuple(data.get("rules") or ()), risk=str(data.get("risk", "medium")),
            version=int(data.get("version", 0)), reason=data.get("reason"),
            batch_id=data.get("batch_id"),
        )


@dataclass(frozen=True, kw_only=True)
class Resumed:
    """A claimed request: run it with `args`, continue from `checkpoint`, then report."""

    id: str
    """The request id."""
    action: str
    """The action name."""
    decision: str
    """The policy's decision (allow, notify or require_approval)."""
    state: str
    """The state it was claimed from: allowed, notified or approved."""
    args: dict[str, Any]
    """The final arguments, with a reviewer's edits applied."""
    checkpoint: Any
    """What the submitting run stored with the action."""
    lease_expires_at: float
    """Report an outcome (`Gate.report`) before this, or a person will have to look."""
    digest: str
    """sha256 of the action with these args, as the audit trail records it."""

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "id": self.id, "action": self.action, "decision": self.decision,
            "state": self.state, "args": self.args, "checkpoint": self.checkpoint,
            "lease_expires_at": self.lease_expires_at, "digest": self.digest,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Resumed:
        _check_format(data)
        return cls(
            id=str(data["id"]), action=str(data["action"]), decision=str(data["decision"]),
            state=str(data["state"]), args=dict(data["args"]), checkpoint=data.get("checkpoint"),
            lease_expires_at=float(data["lease_expires_at"]), digest=str(data["digest"]),
        )


def _check_format(data: dict[str, Any]) -> None:
    version = data.get("format", FORMAT)
    if version != FORMAT:
        raise ValueError(f"format {version} is not supported (this interlock reads {FORMAT})")
