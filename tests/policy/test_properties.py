"""Policy engine properties: monotonicity, robustness to any input, CEL fast-path fidelity."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import cel
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from interlock.errors import InterlockError, PolicyError
from interlock.policy import Decision, Facts, Level, Policy, load_policy, load_policy_text
from interlock.policy.cel import CelCondition, CelFailure

SPEC_EXAMPLE = Path(__file__).parent / "spec_example.yaml"
SETTINGS = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
FEW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- building blocks ----------------------------------------------------------------------------

NAMES = ["deploy", "scale", "db.delete_rows", "db.get_row", "read_file", "send_payment", "iam.x"]
ENVS = ["production", "staging", "dev"]
AGENTS = ["ops-agent", "billing-bot", "mailer"]
WHENS = [
    "amount > 1000",
    "affected_records >= 10 && environment == 'production'",
    "has(args.force) || risk == 'high'",
    "'payment' in capabilities",
    "!novel && failures < 2",
    "size(recipients) > 2",
]

match_entries = st.fixed_dictionaries(
    {},
    optional={
        "action": st.one_of(
            st.sampled_from([*NAMES, "db.*", "*.delete*", "read_*"]),
            st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique=True),
        ),
        "environment": st.sampled_from(ENVS),
        "agent": st.sampled_from(AGENTS),
        "capabilities": st.sampled_from(["payment", "email", {"in": ["payment", "email"]}]),
        "amount": st.builds(
            lambda op, n: {op: n}, st.sampled_from(["gt", "gte", "lt", "lte", "eq", "ne"]),
            st.integers(0, 5000),
        ),
        "args.table": st.sampled_from(["users", {"regex": "user.*"}, {"exists": False}]),
    },
)


FACT_FREE_WHENS = [w for w in WHENS if "novel" not in w and "failures" not in w]


@st.composite
def rules(
    draw: st.DrawFn, name: str, decisions: list[str], whens: list[str] = WHENS
) -> dict[str, Any]:
    decision = draw(st.sampled_from(decisions))
    rule: dict[str, Any] = {"name": name, "decision": decision, "match": draw(match_entries)}
    if draw(st.booleans()):
        rule["when"] = draw(st.sampled_from(whens))
        if draw(st.booleans()):
            rule["requires"] = ["amount"]
    if decision == "allow" and draw(st.booleans()):
        rule["escalation"] = False
    if decision in ("allow", "notify") and draw(st.booleans()):
        rule["fail_open"] = True
    if decision == "require_approval" and draw(st.booleans()):
        rule["approvers"] = [draw(st.sampled_from(["ops", "user:ann"]))]
    return rule


@st.composite
def policy_docs(draw: st.DrawFn, whens: list[str] = WHENS) -> dict[str, Any]:
    n = draw(st.integers(0, 5))
    doc: dict[str, Any] = {
        "version": 1,
        "risk": {"high": ["*.delete*", "send_payment"], "low": ["read_*", "*.get*"]},
        "rules": [draw(rules(f"r{i}", [d.value for d in Decision], whens)) for i in range(n)],
    }
    if draw(st.booleans()):
        doc["autonomy"] = {
            "default": draw(st.sampled_from([lv.value for lv in Level])),
            "report": draw(st.booleans()),
            "agents": {"ops-agent": draw(st.sampled_from([lv.value for lv in Level]))},
        }
    else:
        doc["defaults"] = {"decision": draw(st.sampled_from([d.value for d in Decision]))}
    if draw(st.booleans()):
        doc["agents"] = {"billing-bot": {"actions": ["read_*", "send_payment", "db.*"]}}
    if draw(st.booleans()):
        doc["environments"] = {
            draw(st.sampled_from(ENVS)): {
                "default": draw(st.sampled_from([d.value for d in Decision]))
            }
        }
    doc["escalation"] = {
        "confidence_below": 0.7,
        "novel_action": True,
        "novel_recipient": True,
        "repeated_failures": 3,
    }
    return doc


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=8), inner, max_size=4),
    ),
    max_leaves=12,
)

realistic_actions = st.fixed_dictionaries(
    {"action": st.sampled_from(NAMES)},
    optional={
        "agent": st.sampled_from(AGENTS),
        "environment": st.sampled_from(ENVS),
        "capabilities": st.lists(st.sampled_from(["payment", "email"]), max_size=2),
        "amount": st.one_of(st.integers(0, 20000), st.floats(0, 20000), st.text(max_size=3)),
        "affected_records": st.integers(0, 50),
        "recipients": st.lists(st.sampled_from(["a@x.io", "b@y.io", "c@z.io"]), max_size=3),
        "args": st.fixed_dictionaries({}, optional={"table": st.sampled_from(["users", "x"]),
                                                    "force": st.booleans()}),
        "risk": st.sampled_from(["low", "medium", "high", "bogus"]),
    },
)

calm_facts = st.builds(
    Facts, level=st.one_of(st.none(), st.sampled_from(list(Level)))
)


def compile_doc(doc: dict[str, Any]) -> Policy:
    return load_policy_text(json.dumps(doc), "generated.yaml")


# --- monotonicity -------------------------------------------------------------------------------


@SETTINGS
@given(
    doc=policy_docs(),
    extra=rules("added", ["notify", "require_approval", "suggest", "deny"]),
    position=st.integers(0, 5),
    action=realistic_actions,
    facts=calm_facts,
    confidence=st.one_of(st.none(), st.floats(0, 1)),
)
def test_adding_a_rule_other_than_allow_never_loosens(
    doc: dict[str, Any],
    extra: dict[str, Any],
    position: int,
    action: dict[str, Any],
    facts: Facts,
    confidence: float | None,
) -> None:
    if confidence is not None:
        action = {**action, "confidence": confidence}
    before = compile_doc(doc).evaluate(action, facts)
    rules_after = list(doc["rules"])
    rules_after.insert(min(position, len(rules_after)), extra)
    after = compile_doc({**doc, "rules": rules_after}).evaluate(action, facts)
    assert after.decision.rank >= before.decision.rank, (before.reasons, after.reasons)


@SETTINGS
@given(
    doc=policy_docs(FACT_FREE_WHENS),  # rules that read facts may stop matching: not escalation
    action=realistic_actions,
    level=st.one_of(st.none(), st.sampled_from(list(Level))),
    confidence=st.floats(0, 1),
    novel=st.booleans(),
    recipients=st.lists(st.sampled_from(["new@x.io", "other@y.io"]), max_size=2),
    failures=st.integers(0, 6),
)
def test_escalation_never_lowers(
    doc: dict[str, Any],
    action: dict[str, Any],
    level: Level | None,
    confidence: float,
    novel: bool,
    recipients: list[str],
    failures: int,
) -> None:
    policy = compile_doc(doc)
    calm = policy.evaluate(action, Facts(level=level))
    signals = Facts(
        level=level, novel=novel, novel_recipients=tuple(recipients), failures=failures
    )
    raised = policy.evaluate({**action, "confidence": confidence}, signals)
    assert raised.decision.rank >= calm.decision.rank
    if calm.decision.rank >= Decision.REQUIRE_APPROVAL.rank:
        assert raised.decision is calm.decision
        assert raised.rules == calm.rules
    else:
        assert raised.decision in (calm.decision, Decision.REQUIRE_APPROVAL)


# --- the loader never crashes -------------------------------------------------------------------

POLICY_WORDS = [
    "version", "defaults", "risk", "autonomy", "agents", "escalation", "redact", "limits",
    "rules", "environments", "name", "match", "when", "requires", "decision", "approvers",
    "quorum", "timeout", "on_timeout", "escalate_to", "confirm", "approval_ttl", "guidance",
    "stages", "parallel", "fail_open", "action", "environment", "capabilities", "args.x",
    "gt", "in", "regex", "exists", "default", "actions", "high", "low", "max_level", "report",
]
yaml_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(
        ["allow", "deny", "require_approval", "escalate", "approve", "typed", "5m", "4h",
         "*.delete*", "[", "(a)\\1", "amount > ", "amount > 10", "user:ann", "guided", "1"]
    ),
    st.text(max_size=10),
)
yaml_keys = st.one_of(st.sampled_from(POLICY_WORDS), st.text(min_size=1, max_size=8))
yaml_docs = st.recursive(
    yaml_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(yaml_keys, inner, max_size=5)
    ),
    max_leaves=25,
)


def _spec_data() -> Any:
    return YAML(typ="safe", pure=True).load(SPEC_EXAMPLE.read_text())


@st.composite
def mutated_spec(draw: st.DrawFn) -> Any:
    """The SPEC example with one to three subtrees replaced by random data."""
    data = _spec_data()
    for _ in range(draw(st.integers(1, 3))):
        node = data
        while True:
            if isinstance(node, dict) and node:
                key = draw(st.sampled_from(sorted(node, key=str)))
                if draw(st.booleans()) or not isinstance(node[key], (dict, list)):
                    node[key] = draw(yaml_docs)
                    break
                node = node[key]
            elif isinstance(node, list) and node:
                i = draw(st.integers(0, len(node) - 1))
                if draw(st.booleans()) or not isinstance(node[i], (dict, list)):
                    node[i] = draw(yaml_docs)
                    break
                node = node[i]
            else:
                break
    return data


def assert_loads_or_policy_error(text: str) -> None:
    try:
        policy = load_policy_text(text, "fuzz.yaml")
    except PolicyError as exc:
        assert exc.diagnostics
        for d in exc.diagnostics:
            assert d.file == "fuzz.yaml" and d.line >= 1 and d.col >= 1 and d.message
        return
    assert isinstance(policy, Policy)
    policy.evaluate({"action": "deploy", "environment": "production", "amount": 5})


def _dump(data: Any) -> str:
    from io import StringIO

    out = StringIO()
    YAML(typ="safe", pure=True).dump(data, out)
    return out.getvalue()


@SETTINGS
@given(doc=yaml_docs)
def test_random_yaml_documents_load_or_raise_policy_error(doc: Any) -> None:
    assert_loads_or_policy_error(_dump(doc))
    assert_loads_or_policy_error(_dump({"version": 1, "rules": [doc]}))


@FEW
@given(doc=mutated_spec())
def test_mutated_spec_example_loads_or_raises_policy_error(doc: Any) -> None:
    assert_loads_or_policy_error(_dump(doc))


@SETTINGS
@given(
    text=st.one_of(
        st.text(max_size=200),
        st.text(alphabet=st.sampled_from(list(" \n\t:-[]{}&*!|>'\"#%@`,?abc1")), max_size=120),
    )
)
def test_random_text_loads_or_raises_policy_error(text: str) -> None:
    assert_loads_or_policy_error(text)


@FEW
@given(cut=st.integers(0, 4000), junk=st.text(max_size=5))
def test_truncated_or_spliced_spec_example(cut: int, junk: str) -> None:
    text = SPEC_EXAMPLE.read_text()
    cut = min(cut, len(text))
    assert_loads_or_policy_error(text[:cut])
    assert_loads_or_policy_error(text[:cut] + junk + text[cut:])


# --- evaluate never crashes ---------------------------------------------------------------------

OPERATORS_POLICY = """\
version: 1
defaults: {decision: notify, approvers: [ops]}
risk: {high: ['*.delete*'], low: ['read_*']}
autonomy: {default: guided, agents: {a: full_auto}, report: true}
agents: {scoped: {actions: ['read_*']}}
escalation: {confidence_below: 0.5, novel_action: true, novel_recipient: true,
             repeated_failures: 2}
environments: {production: {default: require_approval}}
rules:
  - {name: gt, match: {amount: {gt: 10}}, decision: notify}
  - {name: gte-lt, match: {args.n: {gte: 1, lt: 5}}, decision: require_approval}
  - {name: lte, match: {affected_records: {lte: 3}}, decision: allow}
  - {name: eq, match: {currency: {eq: EUR}}, decision: notify}
  - {name: ne, match: {args.mode: {ne: safe}}, decision: notify}
  - {name: in, match: {capabilities: {in: [payment, email]}}, decision: require_approval}
  - {name: not-in, match: {recipients: {not_in: ['a@b.c']}}, decision: notify}
  - {name: regex, match: {args.path.deep: {regex: '/etc/.*'}}, decision: deny}
  - {name: exists, match: {args.token: {exists: true}}, decision: suggest}
  - {name: missing, match: {args.dry_run: {exists: false}}, decision: notify}
  - {name: glob, match: {action: '*.delete*', environment: 'prod*'}, decision: deny}
  - {name: cel-num, when: 'amount > 100.5 && amount < 1e9', decision: require_approval}
  - {name: cel-str, when: "environment == 'production' || agent in ['a', 'b']", decision: notify}
  - {name: cel-has, when: 'has(args.x) && !(args.x == null)', decision: notify}
  - {name: cel-lib, when: 'recipients.exists(r, r.endsWith("@evil.io"))', decision: deny}
  - {name: cel-size, when: 'size(args.n) > 3', requires: [args.n], decision: require_approval}
  - {name: cel-map, when: "context.history.all(h, h.status != 'failed')", decision: notify}
  - {name: cel-facts, when: 'novel || failures > 1 || risk == "high"', decision: notify}
  - {name: cel-math, when: 'affected_records / 2 > 1', decision: require_approval}
  - {name: cel-str-fn, when: 'reason.contains("urgent")', decision: require_approval}
"""

FIELDS = [
    "action", "args", "agent", "environment", "capabilities", "reason", "context",
    "confidence", "alternatives", "preview", "affected_records", "amount", "currency",
    "recipients", "risk", "idempotency_key", "batch_id", "revision_of", "checkpoint",
]

wild_actions = st.one_of(
    json_values,
    st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=8),
    st.builds(
        lambda name, rest: {**rest, "action": name},
        st.one_of(st.sampled_from([*NAMES, "read_only_query", "x.delete_all"]), st.text()),
        st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=8),
    ),
)
wild_facts = st.builds(
    Facts,
    novel=st.booleans(),
    novel_recipients=st.lists(st.text(max_size=5), max_size=3).map(tuple),
    failures=st.integers(0, 10),
    level=st.one_of(st.none(), st.sampled_from(list(Level))),
)


def _policies() -> list[Policy]:
    return [load_policy(SPEC_EXAMPLE), load_policy_text(OPERATORS_POLICY, "ops.yaml")]


POLICIES = _policies()


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(action=wild_actions, facts=st.one_of(st.none(), wild_facts))
def test_random_actions_raise_nothing_but_interlock_errors(
    action: Any, facts: Facts | None
) -> None:
    for policy in POLICIES:
        try:
            result = policy.evaluate(action) if facts is None else policy.evaluate(action, facts)
        except InterlockError:
            continue
        assert isinstance(result.decision, Decision)
        assert (result.requirements is not None) is (
            result.decision is Decision.REQUIRE_APPROVAL
        )
        json.dumps(result.to_json())


def test_operators_policy_loads_without_diagnostics() -> None:
    policy = POLICIES[1]
    assert policy.warnings == []
    result = policy.evaluate(
        {"action": "db.delete_all", "environment": "production", "agent": "a"}
    )
    assert result.decision is Decision.DENY
    assert "glob" in result.rules


# --- the CEL fast path agrees with the CEL library ---------------------------------------------

FIELD_NAMES = ["a", "b", "s", "args.x", "args.y", "risk", "novel", "failures", "novel_recipients"]
int_literals = st.integers(-(2**63), 2**63 - 1).map(str) | st.integers(-50, 50).map(str)
float_literals = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False).map(
    lambda f: repr(float(f)) if "e" not in repr(float(f)) and "." in repr(float(f)) else "1.5"
)
str_literals = st.text(alphabet="abcxyz é_", max_size=4).map(lambda t: f"'{t}'")
scalar_literals = st.one_of(
    int_literals, float_literals, str_literals, st.sampled_from(["true", "false", "null"])
)
list_literals = st.lists(scalar_literals, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]")
operands = st.one_of(st.sampled_from(FIELD_NAMES), scalar_literals, list_literals)
relations = st.builds(
    lambda left, op, right: f"{left} {op} {right}",
    operands,
    st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "in"]),
    operands,
)
atoms = st.one_of(
    relations,
    st.sampled_from(["has(args.x)", "has(args.z)", "novel", "a", "true", "false",
                     "s.startsWith('a')", "s.endsWith('x')", "s.contains('b')",
                     "args.x.startsWith('a')", "risk.contains('ig')"]),
)
cel_exprs = st.recursive(
    atoms,
    lambda inner: st.one_of(
        st.builds(lambda x: f"!({x})", inner),
        st.builds(lambda x: f"({x})", inner),
        st.builds(lambda x, y: f"{x} && {y}", inner, inner),
        st.builds(lambda x, y: f"{x} || {y}", inner, inner),
    ),
    max_leaves=5,
)

cel_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-100, 100),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-200, 200),
    st.sampled_from(["a", "x", "", "é", "abc"]),
    st.lists(st.one_of(st.integers(-3, 3), st.sampled_from(["a", "x"]), st.booleans()),
             max_size=3),
    st.dictionaries(st.sampled_from(["x", "a"]), st.integers(-3, 3), max_size=2),
)
activations = st.fixed_dictionaries(
    {},
    optional={
        "a": cel_values,
        "b": cel_values,
        "s": cel_values,
        "args": st.one_of(
            st.fixed_dictionaries({}, optional={"x": cel_values, "y": cel_values}), cel_values
        ),
    },
)
extras_values = st.fixed_dictionaries(
    {
        "risk": st.sampled_from(["low", "medium", "high"]),
        "novel": st.booleans(),
        "novel_recipients": st.lists(st.sampled_from(["a", "x"]), max_size=2),
        "failures": st.integers(0, 5),
    }
)


STRING_METHODS = ("startsWith", "endsWith", "contains")


def library_says(expr: str, activation: dict[str, Any]) -> str:
    """The CEL library alone: `true`, `false`, `missing` or `error`."""
    try:
        value = cel.compile(expr).execute(activation)
    except RuntimeError as exc:
        # A method the value's type lacks comes back as an undefined function: an error.
        undefined = re.match(r"Undefined variable or function: '([^']*)'", str(exc))
        if undefined is not None and undefined.group(1) not in STRING_METHODS:
            return "missing"
        return "error"
    except KeyError:
        return "missing"
    except Exception:
        return "error"
    if value is True:
        return "true"
    if value is False:
        return "false"
    return "error"


def condition_says(outcome: bool | CelFailure) -> str:
    if outcome is True:
        return "true"
    if outcome is False:
        return "false"
    assert isinstance(outcome, CelFailure)
    return "missing" if outcome.missing else "error"


def _compiles(expr: str) -> bool:
    try:
        cel.compile(expr)
    except Exception:
        return False
    return True


PLAIN_EXTRAS = {"risk": "low", "novel": False, "novel_recipients": [], "failures": 0}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expr=cel_exprs, action=activations, extras=extras_values)
@example(expr="a == null", action={"a": None}, extras=PLAIN_EXTRAS)
@example(expr="a > 1 || b == 'x'", action={"b": "x"}, extras=PLAIN_EXTRAS)
@example(expr="args.x in [1, 2.0]", action={"args": {"x": 2}}, extras=PLAIN_EXTRAS)
@example(expr="a < 1", action={"a": 2**64}, extras=PLAIN_EXTRAS)
@example(expr="!has(args.z) && a", action={"a": 1, "args": {}}, extras=PLAIN_EXTRAS)
def test_cel_fast_path_agrees_with_the_library(
    expr: str, action: dict[str, Any], extras: dict[str, Any]
) -> None:
    assume(_compiles(expr))
    condition = CelCondition(expr)
    got = condition_says(condition.evaluate(action, extras))
    expected = library_says(expr, {**action, **extras})
    assert got == expected, (expr, action, extras)


def test_simple_expressions_take_the_fast_path() -> None:
    for expr in ["amount > 10000", "a == 'x' && !(b in [1, 2])", "has(args.x) || novel"]:
        assert CelCondition(expr).has_fast_path, expr
    assert not CelCondition("size(recipients) > 2").has_fast_path


def test_differential_oracle_distinguishes_outcomes() -> None:
    assert library_says("a > 1", {"a": 2}) == "true"
    assert library_says("a > 1", {"a": 0}) == "false"
    assert library_says("a > 1", {}) == "missing"
    assert library_says("a > 1", {"a": "x"}) == "error"
    assert library_says("args.x > 1", {"args": {}}) == "missing"


def test_nan_and_inf_amounts_do_not_crash_the_spec_policy() -> None:
    policy = POLICIES[0]
    for amount in (math.nan, math.inf, -math.inf, 2**80, -(2**80)):
        result = policy.evaluate(
            {"action": "send_payment", "capabilities": ["payment"], "amount": amount}
        )
        assert result.decision is Decision.REQUIRE_APPROVAL


# --- every path gives the same answer -----------------------------------------------------------


@SETTINGS
@given(doc=policy_docs(), actions=st.lists(realistic_actions, min_size=1, max_size=6))
def test_no_facts_and_empty_facts_decide_alike(
    doc: dict[str, Any], actions: list[dict[str, Any]]
) -> None:
    """`Facts()` means what leaving facts out means: not novel, no failures, configured level."""
    policy = compile_doc(doc)
    for action in actions:
        for confidence in (None, 0.1, 0.9):
            if confidence is not None:
                action = {**action, "confidence": confidence}
            assert policy.evaluate(action) == policy.evaluate(action, Facts()), action


@FEW
@given(doc=policy_docs(), actions=st.lists(realistic_actions, min_size=2, max_size=5))
def test_a_warm_policy_decides_like_a_fresh_one(
    doc: dict[str, Any], actions: list[dict[str, Any]]
) -> None:
    """Whatever a policy remembers between decisions never changes a later decision."""
    warm = compile_doc(doc)
    for _ in range(2):
        for action in actions:
            assert warm.evaluate(action) == compile_doc(doc).evaluate(action), action


SPEC_TEXT = SPEC_EXAMPLE.read_text()


@FEW
@given(actions=st.lists(wild_actions, min_size=2, max_size=6))
def test_wild_actions_decide_alike_on_every_path(actions: list[Any]) -> None:
    for text in (SPEC_TEXT, OPERATORS_POLICY):
        warm, fresh = load_policy_text(text, "p.yaml"), load_policy_text(text, "p.yaml")
        for action in actions:
            try:
                plain = warm.evaluate(action)
            except InterlockError:
                continue
            assert plain == warm.evaluate(action, Facts()), action
        # `fresh` sees them in the opposite order: no decision may depend on the order.
        for action in reversed(actions):
            try:
                assert fresh.evaluate(action) == warm.evaluate(action), action
            except InterlockError:
                continue
