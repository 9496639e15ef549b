"""The same policy written in Cedar, so interlock can be timed against cedarpy fairly.

One `permit` per interlock rule, scope, baseline cell, environment default and escalation
trigger, each tagged `@id(...)`; one `is_authorized` call yields the satisfied set, and
`CedarPolicy.decide` folds it into a decision by SPEC §3.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import cedarpy

from interlock.policy.records import AUTONOMY_MATRIX, Decision, Level, Risk

#: Cedar has no floats: amounts travel as integer cents, confidences as millionths.
SCALE = {"amount": 100, "confidence": 1_000_000}
LIST_FIELDS = frozenset({"capabilities", "recipients"})
TOP_FIELDS = ("action", "agent", "environment", "capabilities", "recipients", "amount",
              "affected_records", "confidence", "risk")

RANKS = {d: i for i, d in enumerate(Decision)}
DECISIONS = tuple(Decision)
_ALLOW = RANKS[Decision.ALLOW]
_NOTIFY = RANKS[Decision.NOTIFY]
_APPROVAL = RANKS[Decision.REQUIRE_APPROVAL]

# What a satisfied policy stands for.
_RULE, _BASELINE, _ENV, _SCOPE, _ESCALATE = range(5)


class Untranslatable(ValueError):
    """A policy feature this translator has no exact Cedar equivalent for."""


def _str(value: str) -> str:
    return json.dumps(value)


def _like(glob: str) -> str:
    # Cedar's `like` knows only `*`; interlock globs also have `?` and `[...]`.
    if any(c in glob for c in "?[\\"):
        raise Untranslatable(f"glob `{glob}` (Cedar `like` has only `*`)")
    return _str(glob)


def _scaled(field: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Untranslatable(f"`{field}` compared with non-number `{value!r}`")
    exact = value * SCALE.get(field, 1)
    scaled = round(exact)
    if abs(exact - scaled) > 1e-6:
        raise Untranslatable(f"`{field}` value `{value}` is finer than Cedar's scale")
    return scaled


def _literal(field: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(_scaled(field, value))
    if isinstance(value, str):
        return _str(value)
    raise Untranslatable(f"`{field}` literal `{value!r}`")


def _path(field: str) -> tuple[str, str]:
    """(guard, expression) for an action field: the guard holds when the field is present."""
    parts = field.split(".")
    guards, expr = [], "context"
    for part in parts:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part):
            raise Untranslatable(f"field `{field}`")
        guards.append(f"{expr} has {part}")
        expr = f"{expr}.{part}"
    return " && ".join(guards), expr


def _any(conds: Iterable[str]) -> str:
    conds = list(conds)
    if not conds:
        return "false"
    return conds[0] if len(conds) == 1 else "(" + " || ".join(conds) + ")"


def _all(conds: Iterable[str]) -> str:
    conds = [c for c in conds if c != "true"]
    if not conds:
        return "true"
    return conds[0] if len(conds) == 1 else "(" + " && ".join(conds) + ")"


def _scalar_match(field: str, expr: str, value: Any) -> str:
    """One element (or a scalar field) against a literal or glob."""
    if isinstance(value, str) and any(c in value for c in "*?["):
        return f"{expr} like {_like(value)}"
    return f"{expr} == {_literal(field, value)}"


_REGEX_AS_LIKE = re.compile(r"[\w\-]+\.\*")  # `prod.*` -> `prod*`, the only regex shape used


def _op(field: str, guard: str, expr: str, op: str, arg: Any) -> str:
    listy = field in LIST_FIELDS
    if op == "exists":
        return guard if arg else f"!({guard})"
    if listy:
        if op == "eq":
            return f"{guard} && {expr}.contains({_literal(field, arg)})"
        if op == "in":
            items = ", ".join(_literal(field, a) for a in arg)
            return f"{guard} && {expr}.containsAny([{items}])"
        raise Untranslatable(f"`{op}` on list field `{field}` (Cedar has no quantifiers)")
    if op in ("gt", "gte", "lt", "lte", "eq", "ne"):
        sym = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "eq": "==", "ne": "!="}[op]
        return f"{guard} && {expr} {sym} {_literal(field, arg)}"
    if op in ("in", "not_in"):
        items = ", ".join(_literal(field, a) for a in arg)
        neg = "!" if op == "not_in" else ""
        return f"{guard} && {neg}[{items}].contains({expr})"
    if op == "regex" and isinstance(arg, str) and _REGEX_AS_LIKE.fullmatch(arg):
        return f"{guard} && {expr} like {_like(arg[:-2] + '*')}"
    raise Untranslatable(f"operator `{op}: {arg!r}` on `{field}`")


def _match_one(field: str, value: Any) -> str:
    guard, expr = _path(field)
    if field == "action":
        guard = "true"  # required by SPEC §1; every request carries it
    if isinstance(value, dict):
        conds = [_op(field, guard, expr, op, arg) for op, arg in value.items()]
        return _all(f"({c})" for c in conds)
    values = value if isinstance(value, list) else [value]
    if field in LIST_FIELDS:
        if any(isinstance(v, str) and any(c in v for c in "*?[") for v in values):
            raise Untranslatable(f"glob on list field `{field}`")
        items = ", ".join(_literal(field, v) for v in values)
        return f"({guard} && {expr}.containsAny([{items}]))"
    return _all([guard, _any(_scalar_match(field, expr, v) for v in values)])


def _has(field: str) -> str:
    return _path(field)[0]


def _num(field: str) -> Callable[[str], str]:
    def cond(sym_limit: str) -> str:
        sym, limit = sym_limit.split(" ")
        return f"({_has(field)} && context.{field} {sym} {_scaled(field, float(limit))})"

    return cond


#: The CEL shapes the bench policies use, each with its exact Cedar reading. A missing field
#: is a CEL error that counts as false, hence the `has` guards; `||` and `&&` absorb errors
#: the way CEL's commutative operators do.
_CEL: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]] = [
    (re.compile(r"(amount|affected_records|confidence) (>|>=|<|<=) ([\d.]+)"),
     lambda m: _num(m[1])(f"{m[2]} {m[3]}")),
    (re.compile(r'amount > ([\d.]+) && environment == "([\w-]+)"'),
     lambda m: f"({_num('amount')('> ' + m[1])} && "
               f'(context has environment && context.environment == "{m[2]}"))'),
    (re.compile(r"affected_records > (\d+) \|\| amount > ([\d.]+)"),
     lambda m: f"({_num('affected_records')('> ' + m[1])} || {_num('amount')('> ' + m[2])})"),
    (re.compile(r'environment\.startsWith\("([\w-]+)"\)'),
     lambda m: f'(context has environment && context.environment like "{m[1]}*")'),
    (re.compile(r'action\.endsWith\("([\w.-]+)"\)'),
     lambda m: f'context.action like "*{m[1]}"'),
    (re.compile(r'"([\w-]+)" in (capabilities|recipients)'),
     lambda m: f'(context has {m[2]} && context.{m[2]}.contains("{m[1]}"))'),
    (re.compile(r"args\.(\w+) > (\d+)"),
     lambda m: f"({_has('args.' + m[1])} && context.args.{m[1]} > {m[2]})"),
]


def cel_to_cedar(expr: str) -> str:
    for pattern, build in _CEL:
        m = pattern.fullmatch(expr.strip())
        if m:
            return build(m)
    raise Untranslatable(f"CEL `{expr}`")


def _rule_condition(rule: dict[str, Any]) -> str:
    conds = [_match_one(f, v) for f, v in (rule.get("match") or {}).items()]
    if "when" in rule:
        when = cel_to_cedar(rule["when"])
        missing = [f"!({_has(f)})" for f in rule.get("requires", ())]
        conds.append(_any([when, *missing]))
    return _all(conds)


def _risk_conditions(policy: dict[str, Any]) -> dict[Risk, str]:
    """When the action is of each risk class: the highest class a glob or the hint gives."""
    globs = policy.get("risk") or {}

    def hits(cls: str) -> str:
        return _any(f"context.action like {_like(g)}" for g in globs.get(cls, ()))

    def hint(cls: str) -> str:
        return f'(context has risk && context.risk == "{cls}")'

    high = _any([hint("high"), hits("high")])
    medium = _all([f"!{high}", _any([hint("medium"), hits("medium"), f"!{hits('low')}"])])
    low = _all([f"!{high}", f"!{hint('medium')}", f"!{hits('medium')}", hits("low")])
    return {Risk.HIGH: high, Risk.MEDIUM: medium, Risk.LOW: low}


def _agent_in(names: Iterable[str]) -> str:
    items = ", ".join(_str(n) for n in sorted(names))
    return f"(context has agent && [{items}].contains(context.agent))"


@dataclass(frozen=True)
class _Entry:
    kind: int
    rank: int


def translate(policy: dict[str, Any]) -> tuple[str, dict[str, _Entry]]:
    """Cedar text for an interlock policy (as parsed YAML), and what each `@id` stands for."""
    out: list[str] = []
    table: dict[str, _Entry] = {}

    def permit(pid: str, kind: int, decision: Decision, cond: str) -> None:
        if pid in table:
            raise Untranslatable(f"duplicate id `{pid}`")
        table[pid] = _Entry(kind, RANKS[decision])
        body = "" if cond == "true" else f"\nwhen {{ {cond} }}"
        out.append(f"@id({_str(pid)})\npermit(principal, action, resource){body};")

    for agent, scope in (policy.get("agents") or {}).items():
        allowed = _any(_scalar_match("action", "context.action", g) for g in scope["actions"])
        cond = f'context has agent && context.agent == {_str(agent)} && !{allowed}'
        permit(f"scope:{agent}", _SCOPE, Decision.DENY, cond)

    for rule in policy.get("rules") or ():
        permit(rule["name"], _RULE, Decision(rule["decision"]), _rule_condition(rule))

    autonomy = policy.get("autonomy")
    if autonomy is not None:
        default = Level(autonomy.get("default", "guided"))
        pinned = {a: Level(lv) for a, lv in (autonomy.get("agents") or {}).items()}
        risks = _risk_conditions(policy)
        for level in sorted({default, *pinned.values()}, key=lambda lv: lv.rank):
            mine = [a for a, lv in pinned.items() if lv is level]
            who = [_agent_in(mine)] if mine else []
            if level is default:
                who.append("!(context has agent)")
                if pinned:
                    who.append(f"!{_agent_in(pinned)}")
            for risk, risk_cond in risks.items():
                decision = AUTONOMY_MATRIX[level][risk]
                if autonomy.get("report") and decision is Decision.ALLOW:
                    decision = Decision.NOTIFY
                cond = _all([_any(who), risk_cond])
                permit(f"baseline:{level.value}:{risk.value}", _BASELINE, decision, cond)

    for env, conf in (policy.get("environments") or {}).items():
        if "default" in conf:
            cond = f"context has environment && context.environment == {_str(env)}"
            permit(f"environment:{env}", _ENV, Decision(conf["default"]), cond)

    esc = policy.get("escalation") or {}
    if "confidence_below" in esc:
        limit = _scaled("confidence", esc["confidence_below"])
        cond = f"context has confidence && context.confidence < {limit}"
        permit("escalation:confidence", _ESCALATE, Decision.REQUIRE_APPROVAL, cond)
    if esc.get("novel_action"):
        permit("escalation:novel", _ESCALATE, Decision.REQUIRE_APPROVAL, "context.novel")
    if esc.get("novel_recipient"):
        cond = "context.novel_recipient"
        permit("escalation:novel_recipient", _ESCALATE, Decision.REQUIRE_APPROVAL, cond)
    if "repeated_failures" in esc:
        cond = f"context.failures >= {int(esc['repeated_failures'])}"
        permit("escalation:failures", _ESCALATE, Decision.REQUIRE_APPROVAL, cond)

    return "\n\n".join(out) + "\n", table


def _cedar_value(field: str, value: Any) -> Any:
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        return _scaled(field, value)
    if isinstance(value, list):
        return [_cedar_value(field, v) for v in value]
    if isinstance(value, dict):
        return {k: _cedar_value(f"{field}.{k}", v) for k, v in value.items() if v is not None}
    raise Untranslatable(f"action value `{value!r}` of `{field}`")


def to_request(action: dict[str, Any], *, novel: bool = False, failures: int = 0,
               novel_recipient: bool = False) -> dict[str, Any]:
    """The Cedar request for an action: every field in `context`, nulls left out (= missing)."""
    ctx: dict[str, Any] = {"novel": novel, "failures": failures,
                           "novel_recipient": novel_recipient}
    for field in (*TOP_FIELDS, "args"):
        value = action.get(field)
        if value is not None:
            ctx[field] = _cedar_value(field, value)
    agent = action.get("agent") or "anonymous"
    return {"principal": f"Agent::{_str(agent)}", "action": 'Action::"propose"',
            "resource": f"Tool::{_str(action['action'])}", "context": ctx}


class CedarPolicy:
    """An interlock policy compiled to a pre-parsed Cedar `PolicySet`."""

    def __init__(self, policy: dict[str, Any]) -> None:
        self.text, table = translate(policy)
        self.policies = cedarpy.PolicySet.from_str(self.text)
        self.entities = cedarpy.Entities.from_json_str("[]")
        self.table = {pid: (e.kind, e.rank) for pid, e in table.items()}
        autonomy = policy.get("autonomy")
        default = (policy.get("defaults") or {}).get("decision", "allow")
        # Without `autonomy` the baseline is `defaults.decision` (no Cedar policy needed).
        self.base = -1 if autonomy is not None else RANKS[Decision(default)]

    def authorize(self, request: dict[str, Any]) -> cedarpy.AuthzResult:
        return cedarpy.is_authorized(request, self.policies, self.entities)

    def decide(self, result: cedarpy.AuthzResult) -> Decision:
        """SPEC §3 over the satisfied policies: scope, rules, baseline, allow-rule, escalation."""
        if result.diagnostics.errors:
            raise RuntimeError(f"cedar evaluation errors: {result.diagnostics.errors}")
        table = self.table
        base, rules, allow_rule, escalate = self.base, -1, False, False
        for pid in result.diagnostics.id_annotations_by_reason.values():
            kind, rank = table[pid]
            if kind == _RULE:
                if rank > rules:
                    rules = rank
                if rank == _ALLOW:
                    allow_rule = True
            elif kind in (_BASELINE, _ENV):
                if rank > base:
                    base = rank
            elif kind == _SCOPE:
                return Decision.DENY
            else:
                escalate = True
        result_rank = rules if allow_rule or rules > base else base
        if escalate and result_rank <= _NOTIFY:
            result_rank = _APPROVAL
        return DECISIONS[result_rank]

    def evaluate(self, request: dict[str, Any]) -> Decision:
        return self.decide(self.authorize(request))

