"""The compiled policy and its decision function (SPEC §3), built for microsecond decisions.

Rules are indexed by action name: literal names in a dict, globs checked once per new
action name, and the outcome cached as a per-action plan holding the risk class and the
few candidate rules. Each decision then checks only those candidates; CEL runs only for
rules whose structured match already holds. Without facts from the store, a decision is
answered by the `decide` generated (`codegen`) for its context, the rules that context
leaves tested inline; `_evaluate_general` is the reference every shortcut must agree with.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from interlock.errors import BadInput, Diagnostic
from interlock.policy import codegen
from interlock.policy import match as matchlib
from interlock.policy.cel import MISSING as _CEL_MISSING
from interlock.policy.match import Condition
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
_RISK_RANK = {r: r.rank for r in Risk}
_RISKS = tuple(Risk)  # by rank
_HINT_RANK = {r.value: r.rank for r in Risk}
_PLAN_CACHE_LIMIT = 50_000
_CONTEXT_PATHS = (("environment",), ("agent",), ("capabilities",))


_RESULTS_PER_CONTEXT = 1024


@dataclass(frozen=True, slots=True)
class _Plan:
    """What is known about an action name before looking at the rest of the action."""

    risk: Risk
    rules: tuple[Rule, ...]
    """Rules whose `match.action` (if any) holds for this name, in file order."""
    tests: tuple[tuple[Rule, RuleTest], ...]
    """Each candidate rule with its compiled test."""


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
        # Per rule: its conditions on the context (`environment`, `agent`, `capabilities`),
        # the others, and whether the context conditions alone decide it.
        self._split: dict[Rule, tuple[tuple[Condition, ...], tuple[Condition, ...], bool]] = {}
        for rule in doc.rules:
            context = tuple(c for c in rule.conditions if c.path in _CONTEXT_PATHS)
            rest = tuple(c for c in rule.conditions if c.path not in _CONTEXT_PATHS)
            always = not rest and rule.when is None and not rule.requires
            self._split[rule] = (context, rest, always)
        self._compiled: dict[tuple[Rule, ...], tuple[codegen.Factory, codegen.Layout]] = {}
        self._contexts: dict[tuple[Any, ...], codegen.Decide] = {}
        self._general_decide: codegen.Decide = lambda action, rank: self._evaluate_general(
            action, NO_FACTS
        )
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
        self._results: dict[tuple[Any, ...], tuple[PolicyResult, bool]] = {}
        self._shortcuts: dict[tuple[Any, Any, Any, Any], tuple[codegen.Decide, int]] = {}
        self._denials: dict[tuple[str, str | None], codegen.Decide] = {}
        # What `when` sees beside the action when the store supplied no facts; read-only.
        self._plain_extras: dict[Risk, dict[str, Any]] = {
            r: {"risk": r.value, "novel": False, "novel_recipients": [], "failures": 0}
            for r in Risk
        }
        self._confidence_below = doc.escalation.confidence_below
        autonomy = doc.autonomy
        self._levels: dict[str | None, Level] | None = None
        self._default_level: Level | None = None
        if autonomy is not None:
            self._default_level = autonomy.level_of(None)
            self._levels = {a: autonomy.level_of(a) for a in autonomy.agents}
        self._runtime = codegen.Runtime(
            general=self._evaluate_general, no_facts=NO_FACTS, missing=_CEL_MISSING,
            extras=[self._plain_extras[r] for r in Risk], threshold=self._confidence_below,
            escalate=self._raise_for_confidence,
        )
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
        # The common case (no facts from the store, a plain dict) is answered by the
        # `decide` generated for the action's context: name, environment, agent and
        # capabilities. Anything else takes the general path.
        if facts is not NO_FACTS or type(action) is not dict:
            return self._evaluate_general(action, facts)
        caps = action.get("capabilities")
        if type(caps) is list:
            caps = tuple(caps)
        elif caps is not None:
            return self._evaluate_general(action, facts)
        key = (action.get("action"), action.get("environment"), action.get("agent"), caps)
        try:
            decide, rank = self._shortcuts[key]
        except KeyError:
            decide, rank = self._shortcut(key)
        except TypeError:  # an unhashable field
            return self._evaluate_general(action, facts)
        hint = action.get("risk")
        if hint is not None and type(hint) is str:
            hinted = _HINT_RANK.get(hint)
            if hinted is not None and hinted > rank:
                rank = hinted  # a hint raises the risk class, never lowers it
        return decide(action, rank)

    def _evaluate_general(self, action: Mapping[str, Any], facts: Facts) -> PolicyResult:
        """The reference path: every case, every check. `evaluate` only takes shortcuts."""
        if type(action) is not dict and not isinstance(action, Mapping):
            raise BadInput("an action must be a JSON object")
        name = action.get("action")
        if type(name) is not str or not name:
            raise BadInput("`action` must be a non-empty string naming the tool or operation")
        plan = self._plans.get(name)
        if plan is None:
            plan = self._plan_for(name)
        agent = action.get("agent")
        if type(agent) is not str:
            agent = None
        risk = plan.risk
        hint = action.get("risk")
        if hint is not None and type(hint) is str:
            hinted = _RISK_BY_NAME.get(hint)
            if hinted is not None and _RISK_RANK[hinted] > _RISK_RANK[risk]:
                risk = hinted  # a hint raises the risk class, never lowers it
        if facts is NO_FACTS:
            levels = self._levels
            level = None if levels is None else levels.get(agent, self._default_level)
        else:
            if facts.paused is not None:
                return self._result(_DENY, (), (f"paused: {facts.paused}",), risk,
                                    self.level_of(agent, facts))
            level = self.level_of(agent, facts)
        if agent is not None and self._scopes:
            scope = self._scopes.get(agent)
            if scope is not None and not scope(name):
                reason = (
                    f"scope: agent {agent} may only propose {self._scope_text[agent]}, "
                    f"not {name}"
                )
                return self._result(_DENY, (), (reason,), risk, level)

        # Matching rules (rule 2). Notes (a missing required field, a CEL error) make
        # the explanation specific to this action, so those results are not cached.
        extras = self._plain_extras[risk] if facts is NO_FACTS else _extras(risk, facts)
        matched: list[Rule] = []
        notes: dict[Rule, str] | None = None
        for rule, test in plan.tests:
            outcome = test(action, extras)
            if outcome is True:
                matched.append(rule)
            elif outcome is not False and outcome is not _CEL_MISSING and outcome is not None:
                note = _resolve(rule, action, extras)
                if note is not None:
                    matched.append(rule)
                    if note:
                        if notes is None:
                            notes = {}
                        notes[rule] = note

        env = action.get("environment")
        if type(env) is not str or env not in self.environments:
            env = None
        if notes is not None:
            result, escalatable = self._decide(risk, level, env, matched, notes)
        else:
            result, escalatable = self._cached_decision(plan, risk, level, env, tuple(matched))
        if escalatable:
            threshold = self._confidence_below
            if threshold is not None:
                confidence = action.get("confidence")
                if confidence is not None and type(confidence) in (int, float) and (
                    confidence < threshold
                ):
                    return self._escalate(result, action, facts)
            if facts is not NO_FACTS and self._escalations(action, facts):
                return self._escalate(result, action, facts)
        return result

    # --- internals ----------------------------------------------------------------------
    def _cached_decision(
        self, plan: _Plan, risk: Risk, level: Level | None, env: str | None,
        matched: tuple[Rule, ...],
    ) -> tuple[PolicyResult, bool]:
        # Without notes the result depends on nothing else, so it is shared.
        key = (plan, risk, level, env, matched)
        cached = self._results.get(key)
        if cached is None:
            cached = self._decide(risk, level, env, list(matched), None)
            if len(self._results) >= _PLAN_CACHE_LIMIT:
                self._results.clear()
            self._results[key] = cached
        return cached

    def _narrow(
        self, plan: _Plan, name: str, env: str | None, agent: str | None,
        caps: tuple[str, ...] | None,
    ) -> tuple[list[tuple[Rule, tuple[Condition, ...]]], list[Rule]]:
        """The plan's rules for one context, their context conditions already decided.

        Conditions on `environment`, `agent` and `capabilities` (literals, globs, `in`,
        regexes) are checked once here, and so is a `when` that reads nothing but those
        fields and `action`, when the context has each of them. Returns the rules still to
        test, each with the conditions left, and the rules that match outright.
        """
        probe: dict[str, Any] = {"action": name}
        if env is not None:
            probe["environment"] = env
        if agent is not None:
            probe["agent"] = agent
        if caps is not None:
            probe["capabilities"] = list(caps)
        kept: list[tuple[Rule, tuple[Condition, ...]]] = []
        decided: list[Rule] = []
        for rule in plan.rules:
            context, rest, always = self._split[rule]
            for cond in context:
                if not cond.holds(probe):
                    break
            else:
                if always:
                    decided.append(rule)  # nothing left to check: it matches here
                    continue
                when = rule.when
                if (
                    when is not None and when.fast is not None and not rest
                    and not rule.requires and when.reads <= probe.keys()
                ):
                    # Every field it reads is in the probe, so the action has each with
                    # this very value (a null one would be absent here, and left to test).
                    outcome = when.fast(probe, {})
                    if outcome is True:
                        decided.append(rule)
                        continue
                    if outcome is False or outcome is _CEL_MISSING or outcome is None:
                        continue
                kept.append((rule, rest))
        return kept, decided

    def _shortcut(self, key: tuple[Any, Any, Any, Any]) -> tuple[codegen.Decide, int]:
        """The `decide` and base risk rank for a context `evaluate` has not seen yet."""
        name, env, agent, caps = key
        if type(name) is not str or not name:
            entry = (self._general_decide, 0)  # the general path says what is wrong
        else:
            plan = self._plan_for(name)
            entry = (self._context(plan, name, env, agent, caps), _RISK_RANK[plan.risk])
        if len(self._shortcuts) >= _PLAN_CACHE_LIMIT:
            self._shortcuts.clear()  # a flood of distinct contexts must not grow memory
        self._shortcuts[key] = entry
        return entry

    def _context(
        self, plan: _Plan, name: str, env: Any, agent: Any, caps: tuple[Any, ...] | None
    ) -> codegen.Decide:
        """The `decide` for one context of one action name.

        Contexts that narrow alike share one `decide` and its results, whatever the action
        name: fewer objects for a stream of varied actions to touch.
        """
        if (
            (env is not None and type(env) is not str)
            or (agent is not None and type(agent) is not str)
            or (caps is not None and any(type(c) is not str for c in caps))
        ):
            # Only plain strings make a context: 1 == 1.0 == True would share one.
            return self._general_decide
        scope = self._scopes.get(agent) if agent is not None else None
        if scope is not None and not scope(name):
            denial = self._denials.get((name, agent))
            if denial is None:
                if len(self._denials) >= _PLAN_CACHE_LIMIT:
                    self._denials.clear()
                denial = self._denials[(name, agent)] = self._denial()
            return denial
        kept, matched = self._narrow(plan, name, env, agent, caps)
        levels = self._levels
        level = None if levels is None else levels.get(agent, self._default_level)
        env_key = env if env in self.environments else None
        rules = tuple(rule for rule, _ in kept)
        key = (rules, tuple(matched), level, env_key)
        shared = self._contexts.get(key)
        if shared is not None:
            return shared
        compiled = self._compiled.get(rules)
        if compiled is None:
            if len(self._compiled) >= _PLAN_CACHE_LIMIT:
                self._compiled.clear()
            compiled = self._compiled[rules] = codegen.compile_tests(kept, self._runtime)
        factory, layout = compiled
        results: dict[int, Any] = {}
        decide = self._decide
        threshold = self._confidence_below
        risks = _RISKS

        def fill(action: Mapping[str, Any], rank: int, mask: int) -> Any:
            rules = list(matched)
            for bit, rule in layout.rules:
                if mask & bit:
                    rules.append(rule)
            notes: dict[Rule, str] | None = None
            for rule, fields in layout.lacking:
                names = tuple(name for bit, name in fields if mask & bit)
                if names:
                    if notes is None:
                        notes = {}
                    notes[rule] = f"rule {rule.name}: " + _lacking_text(names)
            rules.sort(key=_by_index)  # explanations follow the file
            result, escalatable = decide(risks[rank], level, env_key, rules, notes)
            # Results escalation may raise carry a cache of their raised forms.
            hit: Any = (result, {}) if escalatable and threshold is not None else result
            if len(results) < _RESULTS_PER_CONTEXT:
                results[mask << 2 | rank] = hit
            return hit

        shared = factory(results, fill)
        if len(self._contexts) >= _PLAN_CACHE_LIMIT:
            self._contexts.clear()
        self._contexts[key] = shared
        return shared

    def _denial(self) -> codegen.Decide:
        """A `decide` for an agent whose scope excludes the action name (rule 1)."""
        general = self._evaluate_general
        by_rank: dict[int, PolicyResult] = {}

        def denied(action: Mapping[str, Any], rank: int) -> PolicyResult:
            result = by_rank.get(rank)
            if result is None:
                result = by_rank[rank] = general(action, NO_FACTS)
            return result

        return denied

    def _raise_for_confidence(
        self, hit: tuple[PolicyResult, dict[tuple[Any, type], PolicyResult]], confidence: Any
    ) -> PolicyResult:
        """The require_approval a confidence below the threshold turns `hit` into (rule 5)."""
        result, raised = hit
        # Keyed by type too, and never for zero: 1 == 1.0 and 0.0 == -0.0, but the reason
        # prints them differently.
        key = (confidence, type(confidence))
        cached = raised.get(key)
        if cached is not None:
            return cached
        escalated = PolicyResult(
            decision=_REQUIRE, rules=(),
            reasons=(f"confidence {confidence} < {self._confidence_below}",),
            risk=result.risk, requirements=self._defaults_requirements,
            errors=result.errors, policy_hash=self.hash, level=result.level,
        )
        if confidence and len(raised) < _RESULTS_PER_CONTEXT:
            raised[key] = escalated
        return escalated

    def _decide(
        self,
        risk: Risk,
        level: Level | None,
        env: str | None,
        matched: list[Rule],
        notes: dict[Rule, str] | None,
    ) -> tuple[PolicyResult, bool]:
        """The result for a set of matching rules, and whether escalation may raise it."""

        def decision_of(rule: Rule) -> Decision:
            # A CEL error applies the rule at no less than require_approval.
            if notes is not None and rule in notes and "CEL error" in notes[rule]:
                return rule.decision if _RANK[rule.decision] >= _RANK[_REQUIRE] else _REQUIRE
            return rule.decision

        decided = [(r, decision_of(r)) for r in matched]
        allow_rules = [r for r, d in decided if d is _ALLOW]
        strongest = _ALLOW
        for _, d in decided:
            if _RANK[d] > _RANK[strongest]:
                strongest = d
        final = strongest
        base_reason: str | None = None
        if not allow_rules:  # an allow rule removes the baseline (rule 4)
            base, reason = self._baseline_for(level, risk, env)
            if _RANK[base] > _RANK[strongest] or not matched:
                final, base_reason = base, reason
        deciders = [r for r, d in decided if d is final]
        reasons = [(notes or {}).get(r) or r.reason for r in deciders]
        if base_reason is not None:
            reasons.insert(0, base_reason)
        errors = [n for n in (notes or {}).values() if "CEL error" in n]

        requirements: Requirements | None = None
        if final is _REQUIRE:
            gates = [r.gate for r in deciders if r.gate is not None]
            if len(gates) == 1 and deciders[0].requirements is not None:
                requirements = deciders[0].requirements
            elif gates:
                requirements = Requirements(gates=tuple(gates))
            else:
                requirements = self._defaults_requirements
        final_allows = final is _ALLOW or final is _NOTIFY
        fail_open = final_allows and bool(matched) and all(r.fail_open for r in matched)
        # Escalation raises allow/notify (rule 5), unless only allow rules decided and
        # every one of them opted out.
        escalatable = final_allows and self._has_escalation and not (
            allow_rules and strongest is _ALLOW and all(not r.escalation for r in allow_rules)
        )
        result = PolicyResult(
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
        return result, escalatable

    def _escalate(
        self, result: PolicyResult, action: Mapping[str, Any], facts: Facts
    ) -> PolicyResult:
        return PolicyResult(
            decision=_REQUIRE,
            rules=(),
            reasons=tuple(self._escalations(action, facts)),
            risk=result.risk,
            requirements=self._defaults_requirements,
            fail_open=False,
            errors=result.errors,
            policy_hash=self.hash,
            level=result.level,
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
                out.append(f"confidence {confidence} < {threshold}")
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
        rules = tuple(dict.fromkeys(candidates))
        plan = _Plan(risk=risk, rules=rules, tests=tuple((r, rule_test(r)) for r in rules))
        if len(self._plans) >= _PLAN_CACHE_LIMIT:
            self._plans.clear()  # a flood of distinct names must not grow memory without end
        self._plans[name] = plan
        return plan


def _extras(risk: Risk, facts: Facts) -> dict[str, Any]:
    """What `when` sees beside the action's own fields."""
    return {
        "risk": risk.value,
        "novel": facts.novel,
        "novel_recipients": list(facts.novel_recipients),
        "failures": facts.failures,
    }


#: A compiled rule test: True (matches), False / MISSING / None (does not), or anything
#: else to mean "resolve it the slow way" (`_resolve`).
RuleTest = Callable[[Mapping[str, Any], Mapping[str, Any]], Any]
_SLOW = object()


def _by_index(rule: Rule) -> int:
    return rule.index


def _always(a: Mapping[str, Any], x: Mapping[str, Any]) -> Any:
    return True


_ALWAYS: RuleTest = _always


def rule_test(rule: Rule, conditions: tuple[Condition, ...] | None = None) -> RuleTest:
    """One closure for a rule's match, requires and `when`, built for the common case.

    `conditions`: the match entries still to check (default: all of the rule's).
    """
    if conditions is None:
        conditions = rule.conditions
    checks = tuple(c.predicate() for c in conditions)
    when = rule.when
    fast = when.fast if when is not None else None
    if rule.requires:
        # A missing required field applies the rule with a note naming it.
        requires = rule.requires
        flat = all(len(p) == 1 for p in requires)
        names = tuple(p[0] for p in requires)

        def with_requires(a: Mapping[str, Any], x: Mapping[str, Any]) -> Any:
            for check in checks:
                if not check(a):
                    return False
            if not flat:
                return _SLOW
            lacking = tuple(field for field in names if a.get(field) is None)
            if lacking:
                return lacking  # the rule applies, with a note naming these (rule 2)
            if fast is None:
                return _SLOW if when is not None else True
            return fast(a, x)

        return with_requires
    if when is None:
        if not checks:
            return _ALWAYS
        if len(checks) == 1:
            return conditions[0].rule_test()
        if len(checks) == 2:
            c1, c2 = checks
            return lambda a, x: c1(a) and c2(a)
        if len(checks) == 3:
            d1, d2, d3 = checks
            return lambda a, x: d1(a) and d2(a) and d3(a)

        def all_checks(a: Mapping[str, Any], x: Mapping[str, Any]) -> Any:
            for check in checks:
                if not check(a):
                    return False
            return True

        return all_checks
    if fast is None:
        def library(a: Mapping[str, Any], x: Mapping[str, Any]) -> Any:
            for check in checks:
                if not check(a):
                    return False
            return _SLOW

        return library
    if not checks:
        return fast  # True / False / MISSING answer directly; anything else -> _resolve

    def checked_fast(a: Mapping[str, Any], x: Mapping[str, Any]) -> Any:
        for check in checks:
            if not check(a):
                return False
        return fast(a, x)

    return checked_fast


def _resolve(rule: Rule, action: Mapping[str, Any], extras: Mapping[str, Any]) -> str | None:
    """The slow way: None (no match), "" (matches), or a note saying why it applies."""
    if rule.requires and _lacks_any(action, rule.requires):
        return f"rule {rule.name}: {_missing_text(action, rule.requires)}"
    if rule.when is None:
        return ""
    outcome = rule.when.evaluate(action, extras)
    if outcome is True:
        return ""
    if outcome is False or outcome.missing:
        return None
    return f"rule {rule.name}: CEL error: {outcome.message}"


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
    return _lacking_text(tuple(".".join(p) for p in paths if _get_path(action, p) is None))


def _lacking_text(names: tuple[str, ...]) -> str:
    return "required " + ", ".join(f"`{m}`" for m in names) + " missing or null"
