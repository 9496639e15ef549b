"""The loaded policy as typed records: what `load` builds and `engine` compiles into indexes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from interlock.policy.cel import CelCondition
from interlock.policy.match import Condition
from interlock.policy.records import Decision, Gate, Level, OnTimeout, Requirements

#: Events that demote an agent one autonomy level.
DEMOTION_EVENTS = ("denied", "reversed", "failed_after_approval")


@dataclass(frozen=True, kw_only=True)
class Defaults:
    """The `defaults` section."""

    decision: Decision = Decision.ALLOW
    """Baseline when the policy has no `autonomy` section."""
    approvers: tuple[str, ...] = ("admin",)
    """Who decides a require_approval that names nobody."""
    timeout: float = 1800.0
    """Seconds a request may wait."""
    on_timeout: OnTimeout = OnTimeout.DENY
    """What a timeout does by default."""
    approval_ttl: float = 900.0
    """Seconds an approval stays usable before it must be re-confirmed."""
    claim_lease: float = 600.0
    """Seconds a claim may go without an outcome before it becomes `unknown`."""


@dataclass(frozen=True, kw_only=True)
class Autonomy:
    """The `autonomy` section: progressive autonomy."""

    default: Level = Level.GUIDED
    """Level of agents not listed."""
    agents: dict[str, Level] = field(default_factory=dict)
    """Configured level per agent."""
    max_level: Level = Level.FULL_AUTO
    """Promotion never goes above this; configured levels are capped to it."""
    promote_after: int = 50
    """Clean approvals needed to move up one level."""
    demote_on: tuple[str, ...] = DEMOTION_EVENTS
    """Events that move an agent down one level."""
    report: bool = False
    """True: the matrix's `allow` becomes `notify`."""
    sample_review: float = 0.0
    """Share of allowed actions queued for post-execution review."""

    def level_of(self, agent: object) -> Level:
        level = self.agents.get(agent, self.default) if isinstance(agent, str) else self.default
        return level if level.rank <= self.max_level.rank else self.max_level


@dataclass(frozen=True, kw_only=True)
class Escalation:
    """The `escalation` section: signals that raise allow/notify to require_approval."""

    confidence_below: float | None = None
    novel_action: bool = False
    novel_recipient: bool = False
    repeated_failures: int | None = None


@dataclass(frozen=True, kw_only=True)
class Limits:
    """The `limits` section."""

    pending_per_agent: int = 100
    actions_per_minute: int = 600


@dataclass(frozen=True, kw_only=True, eq=False)
class Rule:
    """One compiled rule."""

    name: str
    index: int
    """Position in the file (0-based)."""
    line: int
    """Line of the rule in the file."""
    decision: Decision
    conditions: tuple[Condition, ...]
    """The `match` entries other than `action` when the action index handles it."""
    action_patterns: tuple[str, ...] | None
    """Literal names / globs from `match.action` (None: any action, or not indexable)."""
    when: CelCondition | None = None
    requires: tuple[tuple[str, ...], ...] = ()
    gate: Gate | None = None
    """Set for require_approval rules."""
    escalation: bool = True
    """False: escalation never raises this allow rule's result."""
    fail_open: bool = False
    match_spec: dict[str, object] = field(default_factory=dict)
    """`match` as written (plain data)."""
    reason: str = ""
    """`rule NAME`, prebuilt."""
    requirements: Requirements | None = None
    """Requirements when this rule alone asks for approval, prebuilt."""
    checks: tuple[Callable[[Mapping[str, Any]], bool], ...] = ()
    """`conditions` as one-argument predicates, specialised for speed."""


@dataclass(frozen=True, kw_only=True)
class PolicyDoc:
    """Everything a policy file says, validated."""

    file: str
    text_hash: str
    defaults: Defaults
    risk: dict[str, tuple[str, ...]]
    """Risk class name -> globs over `action`."""
    autonomy: Autonomy | None
    scopes: dict[str, tuple[str, ...]]
    """Agent -> the action globs it may propose."""
    escalation: Escalation
    redact: tuple[str, ...]
    limits: Limits
    rules: tuple[Rule, ...]
    environments: dict[str, Decision]
    """Environment -> its baseline decision."""
    scope_tests: dict[str, Callable[[str], bool]] = field(default_factory=dict)
