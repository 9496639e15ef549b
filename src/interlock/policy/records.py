"""The records the policy hands to the rest of interlock: decisions, risk, requirements, results.

Everything here is plain data with no I/O; the store persists these via `to_json`/`from_json`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Decision(StrEnum):
    """What the policy says to do with an action, least to most restrictive."""

    ALLOW = "allow"
    NOTIFY = "notify"
    REQUIRE_APPROVAL = "require_approval"
    SUGGEST = "suggest"
    DENY = "deny"

    @property
    def rank(self) -> int:
        """Restrictiveness: deny > suggest > require_approval > notify > allow."""
        return _DECISION_RANK[self]


_DECISION_RANK = {d: i for i, d in enumerate(Decision)}


def strictest(a: Decision, b: Decision) -> Decision:
    """The more restrictive of two decisions."""
    return a if _DECISION_RANK[a] >= _DECISION_RANK[b] else b


class Risk(StrEnum):
    """Risk class of an action; unclassified actions are medium."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    @property
    def rank(self) -> int:
        return _RISK_RANK[self]


_RISK_RANK = {r: i for i, r in enumerate(Risk)}


class Level(StrEnum):
    """Autonomy level of an agent, least to most autonomous."""

    SUPERVISED = "supervised"
    GUIDED = "guided"
    AUTONOMOUS = "autonomous"
    FULL_AUTO = "full_auto"

    @property
    def rank(self) -> int:
        return _LEVEL_RANK[self]


_LEVEL_RANK = {lv: i for i, lv in enumerate(Level)}


class OnTimeout(StrEnum):
    """What happens when a pending request's deadline passes."""

    DENY = "deny"
    ESCALATE = "escalate"
    APPROVE = "approve"


#: The autonomy matrix of SPEC §3: level x risk -> baseline decision.
AUTONOMY_MATRIX: dict[Level, dict[Risk, Decision]] = {
    Level.SUPERVISED: {
        Risk.LOW: Decision.REQUIRE_APPROVAL,
        Risk.MEDIUM: Decision.REQUIRE_APPROVAL,
        Risk.HIGH: Decision.REQUIRE_APPROVAL,
    },
    Level.GUIDED: {
        Risk.LOW: Decision.ALLOW,
        Risk.MEDIUM: Decision.REQUIRE_APPROVAL,
        Risk.HIGH: Decision.REQUIRE_APPROVAL,
    },
    Level.AUTONOMOUS: {
        Risk.LOW: Decision.ALLOW,
        Risk.MEDIUM: Decision.ALLOW,
        Risk.HIGH: Decision.REQUIRE_APPROVAL,
    },
    Level.FULL_AUTO: {
        Risk.LOW: Decision.ALLOW,
        Risk.MEDIUM: Decision.ALLOW,
        Risk.HIGH: Decision.NOTIFY,
    },
}


@dataclass(frozen=True, kw_only=True)
class Stage:
    """One step of an approval: who may vote and how many distinct reviewers are needed."""

    name: str
    """Stage name, unique within its gate (`approval` for a single-stage rule)."""
    approvers: tuple[str, ...]
    """Group names, or `user:NAME` for one reviewer."""
    quorum: int = 1
    """Distinct allowed reviewers whose approval completes the stage."""
    timeout: float | None = None
    """Seconds this stage may stay open once it opens; None: the gate's timeout."""
    on_timeout: OnTimeout | None = None
    """What its timeout does; None: the gate's `on_timeout`."""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "approvers": list(self.approvers),
            "quorum": self.quorum,
            "timeout": self.timeout,
            "on_timeout": None if self.on_timeout is None else self.on_timeout.value,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Stage:
        on_timeout = data.get("on_timeout")
        return cls(
            name=data["name"],
            approvers=tuple(data["approvers"]),
            quorum=int(data.get("quorum", 1)),
            timeout=data.get("timeout"),
            on_timeout=None if on_timeout is None else OnTimeout(on_timeout),
        )


@dataclass(frozen=True, kw_only=True)
class Gate:
    """The approval one source demands; every gate of a request must be met separately."""

    source: str
    """The rule's name, or `defaults` (baseline, escalation or a CEL error)."""
    stages: tuple[Stage, ...]
    """In order, unless `parallel`."""
    parallel: bool = False
    """True: every stage is open at once."""
    timeout: float
    """Seconds the request may wait for this gate."""
    on_timeout: OnTimeout
    """What the timeout does."""
    escalate_to: tuple[str, ...] = ()
    """Added to the open stage on `on_timeout: escalate`."""
    confirm: bool = False
    """Reviewers must type the request's confirmation phrase."""
    approval_ttl: float
    """Seconds an approval stays usable before it must be re-confirmed."""
    guidance: str | None = None
    """Shown to reviewers."""

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "stages": [s.to_json() for s in self.stages],
            "parallel": self.parallel,
            "timeout": self.timeout,
            "on_timeout": self.on_timeout.value,
            "escalate_to": list(self.escalate_to),
            "confirm": self.confirm,
            "approval_ttl": self.approval_ttl,
            "guidance": self.guidance,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Gate:
        return cls(
            source=data["source"],
            stages=tuple(Stage.from_json(s) for s in data["stages"]),
            parallel=bool(data.get("parallel", False)),
            timeout=float(data["timeout"]),
            on_timeout=OnTimeout(data["on_timeout"]),
            escalate_to=tuple(data.get("escalate_to", ())),
            confirm=bool(data.get("confirm", False)),
            approval_ttl=float(data["approval_ttl"]),
            guidance=data.get("guidance"),
        )


@dataclass(frozen=True, kw_only=True)
class Requirements:
    """What a `require_approval` result needs: every gate, the shortest timeout and TTL."""

    gates: tuple[Gate, ...]
    """One per matching require_approval rule (or one `defaults` gate)."""

    @property
    def timeout(self) -> float:
        """Seconds until the request times out: the shortest of its gates."""
        return min(g.timeout for g in self.gates)

    @property
    def approval_ttl(self) -> float:
        """Seconds an approval stays usable: the shortest of its gates."""
        return min(g.approval_ttl for g in self.gates)

    @property
    def confirm(self) -> bool:
        """Whether any gate demands typed confirmation."""
        return any(g.confirm for g in self.gates)

    def to_json(self) -> dict[str, Any]:
        return {"gates": [g.to_json() for g in self.gates]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Requirements:
        return cls(gates=tuple(Gate.from_json(g) for g in data["gates"]))


@dataclass(frozen=True, kw_only=True)
class Facts:
    """What the store knows about an action's history; missing facts are the mild default."""

    novel: bool = False
    """No earlier successful run of this agent + action + environment."""
    novel_recipients: tuple[str, ...] = ()
    """Recipients this agent never reached before."""
    failures: int = 0
    """Failures of this action in this run."""
    level: Level | None = None
    """The agent's current autonomy level; None: the policy's configured level."""
    paused: str | None = None
    """The kill switch's reason, when the agent (or everyone) is paused."""


NO_FACTS = Facts()


@dataclass(kw_only=True, slots=True)
class PolicyResult:
    """The policy's answer for one action, with its explanation. Read-only by contract.

    Not `frozen`: a frozen dataclass costs five times more to build, and results are
    built on the hot path. The engine hands one instance to every action that decides
    alike, so never assign to a result's fields; build a new one.
    """

    decision: Decision
    """What to do."""
    rules: tuple[str, ...]
    """Names of the rules that decided it (empty when the baseline or scope did)."""
    reasons: tuple[str, ...]
    """Plain words, e.g. `rule production-approval`, `confidence 0.55 < 0.7`."""
    risk: Risk
    """The action's risk class after any hint raised it."""
    requirements: Requirements | None = None
    """Set exactly when decision is require_approval."""
    fail_open: bool = False
    """True when the action may run while the gateway is unreachable."""
    errors: tuple[str, ...] = ()
    """CEL evaluation errors that made a rule apply."""
    policy_hash: str = ""
    """sha256 of the policy text that decided it."""
    level: Level | None = None
    """The agent's autonomy level used (None without an `autonomy` section)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "decision": self.decision.value,
            "rules": list(self.rules),
            "reasons": list(self.reasons),
            "risk": self.risk.value,
            "requirements": None if self.requirements is None else self.requirements.to_json(),
            "fail_open": self.fail_open,
            "errors": list(self.errors),
            "policy_hash": self.policy_hash,
            "level": None if self.level is None else self.level.value,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PolicyResult:
        reqs = data.get("requirements")
        level = data.get("level")
        return cls(
            decision=Decision(data["decision"]),
            rules=tuple(data.get("rules", ())),
            reasons=tuple(data.get("reasons", ())),
            risk=Risk(data["risk"]),
            requirements=None if reqs is None else Requirements.from_json(reqs),
            fail_open=bool(data.get("fail_open", False)),
            errors=tuple(data.get("errors", ())),
            policy_hash=data.get("policy_hash", ""),
            level=None if level is None else Level(level),
        )
