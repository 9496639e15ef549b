"""The compiled policy and its decision function (SPEC §3), built for microsecond decisions.

Rules are indexed by action name: literal names in a dict, globs checked once per new
action name, and the outcome cached as a per-action plan holding the risk class and the
few candidate rules. Each decision then checks only those candidates; CEL runs only for
rules whose structured match already holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from interlock.errors import BadInput, Diagnostic
from interlock.policy import match as matchlib
from interlock.policy.cel import CelFailure
from interlock.policy.model import PolicyDoc, Rule
from interlock.policy.records import (
    AUTONOMY_MATRIX,
    NO_FACTS,
    Decision,
    Facts,
    Gate,
    Level,
    PolicyResult,
    Requirements,
    Risk,
    Stage,
)

_ALLOW = Decision.ALLOW
_NOTIFY = Decision.NOTIFY
_REQUIRE = Decision.REQUIRE_APPROVAL
_DENY = Decision.DENY
_RANK = {d: d.rank for d in Decision}
_RISK_BY_NAME = {r.value: r for r in Risk}
_PLAN_CACHE_LIMIT = 50_000


@dataclass(frozen=True, slots=True)
class _Plan:
    """What is known about an action name before looking at the rest of the action."""

    risk: Risk
    rules: tuple[Rule, ...]
    """Rules whose `match.action` (if any) holds for this name, in file order."""


class Policy:
    """A loaded, compiled policy. `evaluate` is pure and safe to call from many threads."""

    def __init__(self, doc: PolicyDoc) -> None:
        self.doc = doc
        self.hash = doc.text_hash
        self.file = doc.file
        self.defaults = doc.defaults
        self.autonomy = doc.autonomy
        self.escalation = doc.escalation
        self.limits = doc.limits
        self.redact = doc.redact
        self.rules = doc.rules
        self.environments = doc.environments
        self._scopes = doc.scope_tests
        self._scope_text = {a: ", ".join(p) for a, p in doc.scopes.items()}
        self._risk_globs = [
            (Risk(level), [matchlib.compile_glob(p) for p in patterns])
            for level, patterns in sorted(
                doc.risk.items(), key=lambda kv: -_RISK_BY_NAME[kv[0]].rank
            )
        ]
        self._literal: dict[str, list[Rule]] = {}
        self._globbed: list[tuple[Rule, list[Any]]] = []
        self._any: list[Rule] = []
        for rule in doc.rules:
            if rule.action_patterns is None:
                self._any.append(rule)
                continue
            globs = [p for p in rule.action_patterns if matchlib.is_glob(p)]
            for name in rule.action_patterns:
                if not matchlib.is_glob(name):
                    self._literal.setdefault(name, []).append(rule)
            if globs:
                self._globbed.append((rule, [matchlib.compile_glob(g) for g in globs]))
        self._plans: dict[str, _Plan] = {}
        self._defaults_gate = Gate(
            source="defaults",
            stages=(Stage(name="approval", approvers=doc.defaults.approvers, quorum=1),),
            timeout=doc.defaults.timeout,
            on_timeout=doc.defaults.on_timeout,
            approval_ttl=doc.defaults.approval_ttl,
        )
        self._defaults_requirements = Requirements(gates=(self._defaults_gate,))
        self._has_escalation = (
            doc.escalation.confidence_below is not None
            or doc.escalation.novel_action
            or doc.escalation.novel_recipient
            or doc.escalation.repeated_failures is not None
        )
        self._baseline: dict[tuple[Level | None, Risk, Any], tuple[Decision, str]] = {}
        self.warnings: list[Diagnostic] = []
        """Warnings found while loading (the policy still works)."""

    # --- public -------------------------------------------------------------------------
    def risk_of(self, action_name: str) -> Risk:
        """The risk class the `risk` section gives an action name (unclassified: medium)."""
        return self._plan_for(action_name).risk

    def level_of(self, agent: str | None, facts: Facts = NO_FACTS) -> Level | None:
        """The autonomy level used for `agent` (None without an `autonomy` section)."""
        autonomy = self.autonomy
        if autonomy is None:
            return None
        level = facts.level if facts.level is not None else autonomy.level_of(agent)
        return level if level.rank <= autonomy.max_level.rank else autonomy.max_level

    def evaluate(self, action: Mapping[str, Any], facts: Facts = NO_FACTS) -> PolicyResult:
        """Decide one action (a JSON object per SPEC §1) given what the store knows."""
        if not isinstance(action, Mapping):
            raise BadInput("an action must be a JSON object")
        name = action.get("action")
        if type(name) is not str or not name:
            raise BadInput("`action` must be a non-empty string naming the tool or operation")
        plan = self._plans.get(name) or self._plan_for(name)
        agent = action.get("agent")
        risk = plan.risk
        hint = action.get("risk")
        if hint is not None and type(hint) is str:
            hinted = _RISK_BY_NAME.get(hint)
            if hinted is not None and hinted.rank > risk.rank:
                risk = hinted
        level = self.level_of(agent if type(agent) is str else None, facts)

        if facts.paused is not None:
            return self._result(_DENY, (), (f"paused: {facts.paused}",), risk, level)
        if self._scopes and type(agent) is str:
            scope = self._scopes.get(agent)
            if scope is not None and not scope(name):
                reason = (
                    f"scope: agent {agent} may only propose {self._scope_text[agent]}, "
                    f"not {name}"
                )
                return self._result(_DENY, (), (reason,), risk, level)
        elif self._scopes and agent is None:
            pass  # an action without an agent is checked by the caller's identity

        # Matching rules (rule 2), each with the decision it contributes.
        matched: list[tuple[Rule, Decision, str | None]] = []
        extras: dict[str, Any] | None = None
        for rule in plan.rules:
            for cond in rule.conditions:
                if not cond.holds(action):
                    break
            else:
                note: str | None = None
                decision = rule.decision
                if rule.requires and _lacks_any(action, rule.requires):
                    note = f"rule {rule.name}: {_missing_text(action, rule.requires)}"
                elif rule.when is not None:
                    if extras is None:
                        extras = {
                            "risk": risk.value,
                            "novel": facts.novel,
                            "novel_recipients": list(facts.novel_recipients),
                            "failures": facts.failures,
                        }
                    outcome = rule.when.evaluate(action, extras)
                    if outcome is False:
                        continue
                    if outcome is not True:
                        assert isinstance(outcome, CelFailure)
                        if outcome.missing:
                            continue
                        note = f"rule {rule.name}: CEL error: {outcome.message}"
                        if _RANK[decision] < _RANK[_REQUIRE]:
                            decision = _REQUIRE
                matched.append((rule, decision, note))
        return self._decide(action, facts, plan, risk, level, matched)

    # --- internals ----------------------------------------------------------------------
    def _decide(
        self,
        action: Mapping[str, Any],
        facts: Facts,
        plan: _Plan,
        risk: Risk,
        level: Level | None,
        matched: list[tuple[Rule, Decision, str | None]],
    ) -> PolicyResult:
        allow_rules = [r for r, d, _ in matched if d is _ALLOW]
        strongest = _ALLOW
        for _, d, _ in matched:
            if _RANK[d] > _RANK[strongest]:
                strongest = d
        final = strongest
        base_reason: str | None = None
        if not allow_rules:  # an allow rule removes the baseline (rule 4)
            base, reason = self._baseline_for(level, risk, action.get("environment"))
            if _RANK[base] > _RANK[strongest] or not matched:
                final, base_reason = base, reason
        deciders = [r for r, d, _ in matched if d is final]
        reasons = [note or r.reason for r, d, note in matched if d is final]
        if base_reason is not None:
            reasons.insert(0, base_reason)
        errors = [note for _, _, note in matched if note is not None and "CEL error" in note]

        if (final is _ALLOW or final is _NOTIFY) and self._has_escalation and not (
            allow_rules and strongest is _ALLOW and all(not r.escalation for r in allow_rules)
        ):
            signals = self._escalations(action, facts)
            if signals:  # escalation raises, never lowers (rule 5)
                final, deciders, reasons = _REQUIRE, [], signals

        requirements: Requirements | None = None
        if final is _REQUIRE:
            gates = [r.gate for r in deciders if r.gate is not None]
            if len(gates) == 1 and deciders[0].requirements is not None:
                requirements = deciders[0].requirements
            elif gates:
                requirements = Requirements(gates=tuple(gates))
            else:
                requirements = self._defaults_requirements
        fail_open = (
            (final is _ALLOW or final is _NOTIFY)
            and bool(matched)
            and all(r.fail_open for r, _, _ in matched)
        )
        return PolicyResult(
            decision=final,
            rules=tuple(r.name for r in deciders),
            reasons=tuple(reasons),
            risk=risk,
            requirements=requirements,
            fail_open=fail_open,
            errors=tuple(errors),
            policy_hash=self.hash,
            level=level,
        )

    def _result(
        self, decision: Decision, rules: tuple[str, ...], reasons: tuple[str, ...], risk: Risk,
        level: Level | None,
    ) -> PolicyResult:
        return PolicyResult(
            decision=decision, rules=rules, reasons=reasons, risk=risk,
            requirements=self._defaults_requirements if decision is _REQUIRE else None,
            policy_hash=self.hash, level=level,
        )

    def _baseline_for(self, level: Level | None, risk: Risk, env: Any) -> tuple[Decision, str]:
        key = (level, risk, env if type(env) is str else None)
        cached = self._baseline.get(key)
        if cached is not None:
            return cached
        if level is not None and self.autonomy is not None:
            decision = AUTONOMY_MATRIX[level][risk]
            if self.autonomy.report and decision is _ALLOW:
                decision = _NOTIFY
            reason = f"baseline: {level.value} agent, {risk.value} risk"
        else:
            decision = self.defaults.decision
            reason = f"baseline: default decision {decision.value}"
        env_default = self.environments.get(key[2]) if key[2] is not None else None
        if env_default is not None and _RANK[env_default] > _RANK[decision]:
            decision = env_default
            reason = f"baseline: environment {key[2]} defaults to {env_default.value}"
        if len(self._baseline) < _PLAN_CACHE_LIMIT:
            self._baseline[key] = (decision, reason)
        return decision, reason

    def _escalations(self, action: Mapping[str, Any], facts: Facts) -> list[str]:
        cfg = self.escalation
        out: list[str] = []
        threshold = cfg.confidence_below
        if threshold is not None:
            confidence = action.get("confidence")
            # A missing (or non-numeric) confidence triggers nothing (rule 5).
            if isinstance(confidence, (int, float)) and not isinstance(confidence, bool) and (
                confidence < threshold
            ):
                out.append(f"confidence {confidence:g} < {threshold:g}")
        if cfg.novel_action and facts.novel:
            out.append(
                f"novel action: no earlier successful {action.get('action')} by "
                f"{action.get('agent') or 'this agent'}"
                + (f" in {action['environment']}" if action.get("environment") else "")
            )
        if cfg.novel_recipient and facts.novel_recipients:
            out.append("novel recipient: " + ", ".join(facts.novel_recipients))
        if cfg.repeated_failures is not None and facts.failures >= cfg.repeated_failures:
            out.append(
                f"repeated failures: {facts.failures} failures of {action.get('action')} "
                "in this run"
            )
        return out

    def _plan_for(self, name: str) -> _Plan:
        plan = self._plans.get(name)
        if plan is not None:
            return plan
        risk = Risk.MEDIUM
        for level, tests in self._risk_globs:
            if any(t(name) for t in tests):
                risk = level
                break
        candidates = list(self._any)
        candidates.extend(self._literal.get(name, ()))
        for rule, tests in self._globbed:
            if any(t(name) for t in tests) and rule not in candidates:
                candidates.append(rule)
        candidates.sort(key=lambda r: r.index)
        plan = _Plan(risk=risk, rules=tuple(dict.fromkeys(candidates)))
        if len(self._plans) >= _PLAN_CACHE_LIMIT:
            self._plans.clear()  # a flood of distinct names must not grow memory without end
        self._plans[name] = plan
        return plan


def _get_path(action: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = action
    for part in path:
        if type(value) is dict and part in value:
            value = value[part]
        else:
            return None
    return value


def _lacks_any(action: Mapping[str, Any], paths: tuple[tuple[str, ...], ...]) -> bool:
    return any(_get_path(action, p) is None for p in paths)


def _missing_text(action: Mapping[str, Any], paths: tuple[tuple[str, ...], ...]) -> str:
    missing = [".".join(p) for p in paths if _get_path(action, p) is None]
    return "required " + ", ".join(f"`{m}`" for m in missing) + " missing or null"
