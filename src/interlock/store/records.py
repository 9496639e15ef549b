"""What the store hands back: request states, the transition table, and the stored records.

The table of allowed transitions is SPEC §4's chart, written once; nothing else decides it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from interlock.policy.records import Decision, PolicyResult, Requirements, Risk


class State(StrEnum):
    """Where a request is in its lifecycle (SPEC §4)."""

    SUBMITTED = "submitted"
    ALLOWED = "allowed"
    NOTIFIED = "notified"
    DENIED = "denied"
    SUGGESTED = "suggested"
    DONE = "done"
    DISMISSED = "dismissed"
    PENDING = "pending"
    APPROVED = "approved"
    EXECUTING = "executing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"
    CHANGES_REQUESTED = "changes_requested"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


S = State

#: Every allowed state change; anything else is refused with a Conflict.
TRANSITIONS: dict[State, frozenset[State]] = {
    S.SUBMITTED: frozenset({S.ALLOWED, S.NOTIFIED, S.DENIED, S.SUGGESTED, S.PENDING}),
    S.ALLOWED: frozenset({S.EXECUTING, S.CANCELLED}),
    S.NOTIFIED: frozenset({S.EXECUTING, S.CANCELLED}),
    S.SUGGESTED: frozenset({S.DONE, S.DISMISSED}),
    S.PENDING: frozenset(
        {S.APPROVED, S.DENIED, S.CHANGES_REQUESTED, S.EXPIRED, S.CANCELLED}
    ),
    S.APPROVED: frozenset({S.EXECUTING, S.CANCELLED, S.PENDING}),
    S.EXECUTING: frozenset({S.SUCCEEDED, S.FAILED, S.UNKNOWN}),
    S.UNKNOWN: frozenset({S.SUCCEEDED, S.FAILED}),
}

#: States a request never leaves.
FINAL: frozenset[State] = frozenset(s for s in State if not TRANSITIONS.get(s))

#: States a claim may start from.
CLAIMABLE: frozenset[State] = frozenset({S.ALLOWED, S.NOTIFIED, S.APPROVED})

#: Where each decision of the policy puts a new request.
DECISION_STATE: dict[Decision, State] = {
    Decision.ALLOW: S.ALLOWED,
    Decision.NOTIFY: S.NOTIFIED,
    Decision.REQUIRE_APPROVAL: S.PENDING,
    Decision.SUGGEST: S.SUGGESTED,
    Decision.DENY: S.DENIED,
}


def allowed(current: State, target: State) -> bool:
    """Whether the chart has an arrow from `current` to `target`."""
    return target in TRANSITIONS.get(current, frozenset())


Verdict = Literal["approve", "deny", "request_changes"]
ReviewVerdict = Literal["ok", "flagged", "reversed"]
Rating = Literal["correct", "partially_correct", "incorrect"]
TokenKind = Literal["agent", "reviewer", "admin"]


@dataclass(frozen=True, kw_only=True)
class Admission:
    """Checks a submit makes inside its own transaction, so they hold at its commit and cost
    no read transaction of their own. An idempotent replay skips them: its answer stands."""

    pending_limit: int | None = None
    """Refuse (TooMany `pending_limit`) when the agent has this many requests pending."""
    unpaused: bool = False
    """Raise AgentPaused when the agent, or everyone, is paused: the caller decided the
    action without knowing of a pause and must decide it again."""


class AgentPaused(Exception):
    """The agent (or everyone) was paused; `reason` is the pause's."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, kw_only=True)
class Reviewer:
    """A person who decides: a unique name and the groups they belong to."""

    name: str
    """Unique reviewer name; `user:NAME` in approver lists points at it."""
    groups: tuple[str, ...] = ()
    """Group names, e.g. `tech-lead`."""


@dataclass(frozen=True, kw_only=True)
class Request:
    """One stored action with its policy result, state and progress."""

    id: str
    """Sortable unique id (ULID)."""
    agent: str
    """The proposing agent (from its token)."""
    action: dict[str, Any]
    """The action as proposed, with the policy's redact paths masked."""
    result: PolicyResult
    """The policy's answer when it was submitted."""
    policy_hash: str
    """sha256 of the policy that decided it."""
    state: State
    """Current state."""
    version: int
    """Increments on every change a reviewer could see."""
    digest: str
    """sha256 of the canonical JSON of the action with its final args."""
    risk: Risk
    """Risk class."""
    decision: Decision
    """The policy's decision."""
    requirements: Requirements | None
    """What approval needs (replaced by stricter ones after an edit)."""
    progress: dict[str, Any]
    """Per gate and stage: approvals, when each stage opened, escalations."""
    final_args: dict[str, Any]
    """The args to run: the proposal's, or a reviewer's edit."""
    checkpoint: Any
    """Opaque JSON the agent gets back on claim."""
    idempotency_key: str | None
    """Unique per agent."""
    batch_id: str | None
    """Batch, scoped per agent."""
    revision_of: str | None
    """The request this one revises."""
    reason: str | None
    """Why it ended where it is (deny note, timeout, outcome summary)."""
    created_at: float
    """When it was submitted."""
    updated_at: float
    """Last change."""
    deadline: float | None
    """When the earliest open stage times out (pending only)."""
    ttl_expires_at: float | None
    """When an approval stops being usable (approved only)."""
    lease_expires_at: float | None
    """When a claim with no outcome becomes unknown (executing only)."""
    decided_at: float | None = None
    """When it left pending (or was decided at submission)."""

    @property
    def action_name(self) -> str:
        """The tool or operation name."""
        return str(self.action.get("action", ""))


@dataclass(frozen=True, kw_only=True)
class Vote:
    """A reviewer's vote on a request."""

    request_id: str
    """The request voted on."""
    reviewer: str
    """Reviewer name."""
    verdict: Verdict
    """approve / deny / request_changes."""
    note: str | None
    """Free text (a deny's reason)."""
    args: dict[str, Any] | None
    """Edited args carried by the vote, if any."""
    counted: tuple[str, ...]
    """`gate/stage` names this approval counted in."""
    confirmed: bool
    """Whether the typed confirmation was given (checked by the gateway)."""
    round: int
    """Votes start afresh on re-confirmation or new requirements; this numbers the round."""
    at: float
    """When it was cast."""


@dataclass(frozen=True, kw_only=True)
class Claim:
    """What an agent gets when its claim succeeds."""

    request_id: str
    """The claimed request."""
    args: dict[str, Any]
    """Final args (a reviewer's edits applied)."""
    checkpoint: Any
    """Opaque JSON stored at submission."""
    lease_expires_at: float
    """Report an outcome before this, or the request becomes unknown."""
    digest: str
    """sha256 of the action with these args."""


@dataclass(frozen=True, kw_only=True)
class AuditEntry:
    """One link of the audit chain."""

    seq: int
    """Gap-free position, from 1."""
    at: float
    """When it was written."""
    actor: str
    """Who caused it (`agent:NAME`, `reviewer:NAME`, `system`, ...)."""
    event: str
    """What happened, e.g. `state.approved`, `vote`, `token.created`."""
    request_id: str | None
    """The request concerned, if any."""
    digest: str | None
    """The request's digest at that moment, where relevant."""
    data: dict[str, Any]
    """Details."""
    prev_hash: str
    """Hash of the entry before (64 zeros for the first)."""
    hash: str
    """sha256(prev_hash + canonical JSON of the entry)."""


@dataclass(frozen=True, kw_only=True)
class VerifyReport:
    """The result of walking the audit chain."""

    ok: bool
    """True when every entry checks and the anchor (if given) was found."""
    checked: int
    """Entries walked."""
    head_hash: str
    """Hash of the newest entry walked."""
    bad_seq: int | None = None
    """The first entry that does not check."""
    problem: str | None = None
    """Plain words on what is wrong."""


@dataclass(frozen=True, kw_only=True)
class Agent:
    """An agent's autonomy level and track record."""

    name: str
    """Agent name."""
    level: str | None
    """Autonomy level set for it (None: the policy's configured level)."""
    pinned: bool
    """A pinned level is never moved by promotion or demotion."""
    approvals: int
    """Requests of it that reviewers approved."""
    clean_approvals: int
    """Approved with no edit, and not reversed since."""
    denials: int
    """Requests of it that reviewers denied."""
    reversals: int
    """Post-execution reviews that reversed it."""
    failures_after_approval: int
    """Approved requests whose outcome failed."""


@dataclass(frozen=True, kw_only=True)
class Token:
    """A bearer token; only the sha256 of its secret is stored."""

    id: str
    """Token id (not secret)."""
    kind: TokenKind
    """agent / reviewer / admin."""
    name: str
    """The agent's, reviewer's or admin's name."""
    groups: tuple[str, ...]
    """Reviewer groups."""
    environment: str | None
    """Environment an agent token is pinned to."""
    actions: tuple[str, ...] | None
    """Actions an agent token is pinned to (None: any)."""
    created_at: float
    """When it was created."""
    expires_at: float | None
    """When it stops working (None: never)."""
    revoked_at: float | None
    """When it was revoked."""


@dataclass(frozen=True, kw_only=True)
class Pause:
    """A kill switch that is on: new actions of `agent` (None: of every agent) are denied."""

    agent: str | None
    reason: str
    """What the denied agents are told."""
    actor: str
    """Who paused, as the audit trail names them."""
    at: float


@dataclass(frozen=True, kw_only=True)
class Annotation:
    """A post-execution review or a feedback rating on a finished request."""

    request_id: str
    """The request annotated."""
    kind: Literal["review", "rating"]
    """Which of the two."""
    reviewer: str
    """Who annotated."""
    value: str
    """ok/flagged/reversed, or correct/partially_correct/incorrect."""
    note: str | None
    """Free text."""
    correction: Any
    """For ratings: what the right call would have been."""
    at: float
    """When."""


@dataclass(frozen=True, kw_only=True)
class SweepReport:
    """What one sweep changed."""

    expired: list[str] = field(default_factory=list)
    """Requests moved to expired (or denied-on-timeout)."""
    escalated: list[str] = field(default_factory=list)
    """Requests whose open stage gained escalate_to approvers."""
    approved: list[str] = field(default_factory=list)
    """Low-risk requests approved on timeout."""
    unknown: list[str] = field(default_factory=list)
    """Claims whose lease passed with no outcome."""
