"""Shared pieces of the SDK tests: the test policy and a scripted reviewer."""

from __future__ import annotations

from interlock import ReviewDecision, ReviewRequest
from interlock.gateway import Principal

POLICY = """\
version: 1
defaults: {decision: allow, approvers: [ops], timeout: 30m, on_timeout: deny,
           approval_ttl: 15m, claim_lease: 10m}
limits: {pending_per_agent: 1000, actions_per_minute: 100000}
redact: ["args.password"]
rules:
  - name: payments
    match: {capabilities: payment}
    decision: require_approval
    approvers: [finance]
    guidance: "Check the invoice first."
  - name: prod-deploy
    match: {action: deploy, environment: production}
    decision: require_approval
    approvers: [tech-lead]
    confirm: typed
  - name: iam-is-human-only
    match: {action: "iam.*"}
    decision: suggest
  - name: never-drop
    match: {action: drop_table}
    decision: deny
  - name: reads
    match: {action: "read_*"}
    decision: allow
    fail_open: true
"""


class Desk:
    """A scripted reviewer: answers from a queue, records what it was shown."""

    def __init__(self) -> None:
        self.seen: list[ReviewRequest] = []
        self.answers: list[ReviewDecision | None] = []

    def __call__(self, request: ReviewRequest) -> ReviewDecision | None:
        self.seen.append(request)
        return self.answers.pop(0) if self.answers else None


def reviewer(*groups: str, name: str = "rita") -> Principal:
    """A reviewer principal in `groups`."""
    return Principal(role="reviewer", name=name, groups=groups)
