"""The HTTP API's request and response bodies, as pydantic models.

They validate what clients send (a failure is a 422 naming the field) and are the single
source of `/openapi.json`'s schemas; responses are built from the store's records here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from interlock.insights.advice import Advice
from interlock.insights.figures import Bucket, Figures, ReviewerFigures
from interlock.store import Annotation, AuditEntry, Claim, Request, Vote


class _In(BaseModel):
    """A request body: unknown fields are refused, so a typo is a 422, not a silent no-op."""

    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    """A response body."""

    model_config = ConfigDict(extra="allow")


# --- what clients send --------------------------------------------------------------------


class Preview(BaseModel):
    """The computed effect of an action, shown to reviewers as labelled text."""

    model_config = ConfigDict(extra="allow")
    kind: Literal["diff", "sql", "email", "text", "json"]
    """How the UI renders `content`."""
    content: Any = None
    """The effect itself."""


class ActionIn(BaseModel):
    """What an agent proposes (SPEC §1). Extra fields are kept and stored."""

    model_config = ConfigDict(extra="allow")
    action: str = Field(min_length=1, max_length=200)
    """Tool or operation name."""
    args: dict[str, Any] | None = None
    """The call's arguments."""
    agent: str | None = None
    """Must match the token's agent when given."""
    environment: str | None = None
    """e.g. `production`."""
    capabilities: list[str] | None = None
    """e.g. `["payment"]`."""
    reason: str | None = None
    """Why the agent wants it."""
    context: dict[str, Any] | None = None
    """`run_id`, `plan_step`, `plan_total`, `history`."""
    confidence: float | None = Field(default=None, ge=0, le=1)
    """The agent's own certainty, 0..1."""
    alternatives: list[str] | None = None
    """What else it considered."""
    preview: Preview | None = None
    """The computed effect."""
    affected_records: int | None = None
    """How many records it touches."""
    amount: float | None = None
    """Money moved."""
    currency: str | None = None
    """Currency of `amount`."""
    recipients: list[str] | None = None
    """Who receives it."""
    risk: Literal["low", "medium", "high"] | None = None
    """A hint that can raise, never lower, the risk class."""
    idempotency_key: str | None = Field(default=None, max_length=200)
    """Scoped to the agent; a replay returns the first request."""
    batch_id: str | None = Field(default=None, max_length=200)
    """Scoped to the agent."""
    revision_of: str | None = None
    """The request this one revises."""
    checkpoint: Any = None
    """Opaque JSON handed back on claim."""


class OutcomeIn(_In):
    """How a claimed action went."""

    status: Literal["succeeded", "failed"]
    summary: str | None = None


class CancelIn(_In):
    """Why the agent withdraws its request."""

    reason: str | None = None


class DecisionIn(_In):
    """A reviewer's vote."""

    verdict: Literal["approve", "deny", "request_changes"]
    version: int | None = None
    """The version the reviewer saw; a stale one is 409."""
    note: str | None = None
    """Required for deny and request_changes."""
    args: dict[str, Any] | None = None
    """Edited args (approve only); re-checked by the policy."""
    confirmation: str | None = None
    """The confirmation phrase, where the request needs typed confirmation."""
    remember: RememberIn | None = None
    """Approve and remember: a grant that lets matching later actions through."""


class RememberIn(_In):
    """What an "approve and remember" grant covers (SPEC §3 rule 6)."""

    scope: Literal["agent_action", "run", "until"]
    """This agent and action; only this run (`context.run_id`); or until a time."""
    until: float | str | None = None
    """Epoch seconds or an ISO 8601 time; required for `until`, optional otherwise."""
    args_pattern: dict[str, Any] | None = None
    """`{path: glob or literal}` the later action's args must match."""


class AutonomyIn(_In):
    """An admin's request to set (and maybe pin) an agent's level; a second admin approves."""

    level: Literal["supervised", "guided", "autonomous", "full_auto"]
    pinned: bool = False
    """A pinned level never moves on promotion or demotion."""
    reason: str | None = None


class DelegateIn(_In):
    """Add reviewers to the current stage."""

    to: str | list[str]
    """Groups or `user:NAME`."""
    version: int | None = None


class ResolveIn(_In):
    """Close a suggested action, or an unknown outcome after checking what happened."""

    status: Literal["done", "dismissed", "succeeded", "failed"]
    note: str | None = None


class ReviewIn(_In):
    """Post-execution review of a finished request."""

    verdict: Literal["ok", "flagged", "reversed"]
    note: str | None = None


class FeedbackIn(_In):
    """A rating of how the gate decided."""

    rating: Literal["correct", "partially_correct", "incorrect"]
    correction: Any = None
    """What the right call would have been."""
    note: str | None = None


class BatchDecisionIn(_In):
    """One decision over a batch."""

    verdict: Literal["approve_all", "reject_all", "each"]
    items: dict[str, Literal["approve", "deny", "request_changes"]] | None = None
    """For `each`: request id -> verdict."""
    note: str | None = None
    confirmation: str | None = None
    agent: str | None = None
    """The batch's agent, when several agents used the same batch id."""


# --- what the server answers --------------------------------------------------------------


class ErrorBody(BaseModel):
    """The one error shape's inside."""

    code: str
    """Stable machine-readable code, e.g. `not_found`, `already_claimed`."""
    message: str
    """Plain words."""


class ErrorOut(BaseModel):
    """Every error: `{error: {code, message}}`."""

    error: ErrorBody


class EvaluateOut(_Out):
    """The policy's answer without storing anything."""

    decision: str
    rules: list[str]
    reasons: list[str]
    risk: str
    requirements: dict[str, Any] | None = None
    fail_open: bool = False
    errors: list[str] = []
    policy_hash: str = ""
    level: str | None = None


class SubmitOut(_Out):
    """What `POST /v1/actions` answers."""

    id: str
    decision: str
    state: str
    reasons: list[str]
    rules: list[str]
    risk: str
    version: int
    digest: str
    link: str
    """The review page."""
    confirmation_phrase: str | None = None


class VoteOut(_Out):
    """One vote."""

    reviewer: str
    verdict: str
    note: str | None
    args: dict[str, Any] | None
    counted: list[str]
    confirmed: bool
    round: int
    at: float


class AuditEntryOut(_Out):
    """One link of the audit chain."""

    seq: int
    at: float
    actor: str
    event: str
    request_id: str | None
    digest: str | None
    data: dict[str, Any]
    prev_hash: str
    hash: str


class AnnotationOut(_Out):
    """A post-execution review or a rating."""

    request_id: str
    kind: str
    reviewer: str
    value: str
    note: str | None
    correction: Any = None
    at: float


class RequestOut(_Out):
    """A stored request with its state and progress."""

    id: str
    agent: str
    action: dict[str, Any]
    state: str
    decision: str
    risk: str
    version: int
    digest: str
    reasons: list[str]
    rules: list[str]
    requirements: dict[str, Any] | None
    progress: dict[str, Any]
    final_args: dict[str, Any]
    policy_hash: str
    idempotency_key: str | None
    batch_id: str | None
    revision_of: str | None
    reason: str | None
    created_at: float
    updated_at: float
    decided_at: float | None
    deadline: float | None
    ttl_expires_at: float | None
    lease_expires_at: float | None
    confirmation_phrase: str | None = None
    link: str
    votes: list[VoteOut] | None = None
    timeline: list[AuditEntryOut] | None = None
    annotations: list[AnnotationOut] | None = None


class WaitOut(RequestOut):
    """A request as `/wait` answers it; `changed` is false when the wait timed out."""

    changed: bool


class ClaimOut(_Out):
    """A successful claim."""

    id: str
    args: dict[str, Any]
    checkpoint: Any = None
    lease_expires_at: float
    digest: str


class BatchItemOut(_Out):
    """One decided item of a batch."""

    id: str
    state: str
    version: int


class SkippedOut(_Out):
    """One item a batch decision left alone, and why."""

    id: str
    reason: str


class BatchOut(_Out):
    """What a batch decision did."""

    batch_id: str
    results: list[BatchItemOut]
    skipped: list[SkippedOut]


class QueueOut(_Out):
    """What this reviewer may act on, oldest first."""

    kind: str
    items: list[RequestOut]


class AuditOut(_Out):
    """A page of audit entries."""

    entries: list[AuditEntryOut]
    next_after: int | None
    """Pass as `after` for the next page (null: no more)."""


class VerifyOut(_Out):
    """The audit chain walked."""

    ok: bool
    checked: int
    head_hash: str
    bad_seq: int | None = None
    problem: str | None = None


class PauseIn(_In):
    """An admin turns the kill switch on for one agent, or for every agent."""

    reason: str = Field(min_length=1, max_length=4000)
    """What every denied agent is told, and the audit trail keeps."""
    agent: str | None = Field(default=None, min_length=1, max_length=200)
    """Only this agent (default: every agent)."""


class UnpauseIn(_In):
    """An admin lifts a pause: one agent's, or everyone's (each agent's own stays)."""

    agent: str | None = Field(default=None, min_length=1, max_length=200)
    """The agent whose pause ends (default: the pause of every agent)."""


class PauseOut(_Out):
    """A pause in force."""

    agent: str | None
    """The paused agent, or None: every agent."""
    reason: str
    actor: str
    """Who paused, as the audit trail names them."""
    at: float


class PausesOut(_Out):
    """The pauses in force: everyone's first, then each agent's by name."""

    pauses: list[PauseOut]


class HistogramBin(_Out):
    """One bar of the time-to-decision distribution."""

    bin: str
    count: int


class InsightsOut(_Out):
    """Figures over a window per rule, action or agent, and gate-tuning advice."""

    since: float
    until: float
    window_seconds: float
    by: Literal["rule", "action", "agent"]
    overall: Figures
    groups: list[Figures]
    reviewers: list[ReviewerFigures]
    series: list[Bucket]
    histogram: list[HistogramBin]
    policy_file: str | None
    advice: list[Advice]


class ApplyAdviceIn(_In):
    """An admin applies one advice item of `/v1/insights` to the policy file the server runs."""

    advice_id: str = Field(min_length=1, max_length=1000)
    """The item's `id`; it names the policy hash it was computed against."""
    window: str = "7d"
    """The window the item was computed over."""
    reason: str | None = Field(default=None, max_length=4000)
    """Why, for the second admin and the audit trail."""


class AppliedOut(_Out):
    """Applied at once (a tightening), or waiting for a second admin (a loosening)."""

    status: Literal["applied", "pending"]
    advice_id: str
    kind: str
    policy_file: str
    """The policy file's name."""
    diff: str
    old_hash: str
    new_hash: str | None
    """The policy hash the server runs now (None while pending)."""
    request: RequestOut | None
    """The `policy.change` request a second admin approves (pending only)."""


class HealthOut(_Out):
    """Liveness."""

    status: Literal["ok"]
    policy_hash: str


# --- records -> bodies --------------------------------------------------------------------


def vote_out(v: Vote) -> VoteOut:
    return VoteOut(reviewer=v.reviewer, verdict=v.verdict, note=v.note, args=v.args,
                   counted=list(v.counted), confirmed=v.confirmed, round=v.round, at=v.at)


def entry_out(e: AuditEntry) -> AuditEntryOut:
    return AuditEntryOut(seq=e.seq, at=e.at, actor=e.actor, event=e.event,
                         request_id=e.request_id, digest=e.digest, data=e.data,
                         prev_hash=e.prev_hash, hash=e.hash)


def annotation_out(a: Annotation) -> AnnotationOut:
    return AnnotationOut(request_id=a.request_id, kind=a.kind, reviewer=a.reviewer,
                         value=a.value, note=a.note, correction=a.correction, at=a.at)


class AgentOut(_Out):
    """An agent's autonomy level and track record."""

    name: str
    level: str | None
    """The level in force (None: the policy has no `autonomy` section)."""
    stored: str | None
    """The stored level (None: the policy's configured level applies)."""
    pinned: bool
    clean_approvals: int
    promote_after: int | None
    approvals: int
    denials: int
    reversals: int
    failures_after_approval: int


class AgentsOut(_Out):
    """Every agent known, by name."""

    agents: list[AgentOut]


class GrantOut(_Out):
    """A decision-memory grant."""

    id: str
    agent: str
    action: str
    reviewer: str
    scope: str
    run_id: str | None = None
    args_pattern: dict[str, Any] | None = None
    request_id: str | None = None
    """The request whose approval created it."""
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None
    active: bool


class GrantsOut(_Out):
    """Grants, newest first."""

    grants: list[GrantOut]


def request_fields(r: Request, *, link: str, phrase: str | None) -> dict[str, Any]:
    """A request as plain JSON-able fields (the body of RequestOut)."""
    return {
        "id": r.id, "agent": r.agent, "action": r.action, "state": r.state.value,
        "decision": r.decision.value, "risk": r.risk.value, "version": r.version,
        "digest": r.digest, "reasons": list(r.result.reasons), "rules": list(r.result.rules),
        "requirements": None if r.requirements is None else r.requirements.to_json(),
        "progress": r.progress, "final_args": r.final_args, "policy_hash": r.policy_hash,
        "idempotency_key": r.idempotency_key, "batch_id": r.batch_id,
        "revision_of": r.revision_of, "reason": r.reason, "created_at": r.created_at,
        "updated_at": r.updated_at, "decided_at": r.decided_at, "deadline": r.deadline,
        "ttl_expires_at": r.ttl_expires_at, "lease_expires_at": r.lease_expires_at,
        "confirmation_phrase": phrase, "link": link,
    }


def claim_out(c: Claim) -> ClaimOut:
    return ClaimOut(id=c.request_id, args=c.args, checkpoint=c.checkpoint,
                    lease_expires_at=c.lease_expires_at, digest=c.digest)


#: Every model `/openapi.json` describes.
MODELS: tuple[type[BaseModel], ...] = (
    ActionIn, OutcomeIn, CancelIn, DecisionIn, DelegateIn, ResolveIn, ReviewIn, FeedbackIn,
    BatchDecisionIn, ErrorOut, EvaluateOut, SubmitOut, RequestOut, WaitOut, ClaimOut,
    BatchOut, QueueOut, AuditOut, VerifyOut, InsightsOut, HealthOut, RememberIn, AutonomyIn,
    AgentOut, AgentsOut, GrantOut, GrantsOut, ApplyAdviceIn, AppliedOut,
)
