"""The engine's shortcut path (generated per-context tests, shared contexts, cached results)
must decide exactly as its general path does, on any action."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from interlock.policy import Facts, load_policy_text
from interlock.policy.records import NO_FACTS, PolicyResult

POLICY = """
version: 1
defaults: {decision: allow, approvers: [on-call]}
risk:
  high: ["*.delete*", deploy, send_payment]
  medium: ["*.write*"]
  low: ["read_*", "*.get*"]
autonomy:
  default: guided
  agents: {ops: supervised, bot: full_auto}
  max_level: full_auto
agents:
  billing: {actions: ["invoice.*", read_*]}
escalation: {confidence_below: 0.7, novel_action: true, repeated_failures: 2}
environments:
  production: {default: require_approval}
  staging: {default: notify}
rules:
  - name: prod-deploys
    match: {environment: production, action: [deploy, scale]}
    decision: require_approval
    approvers: [lead]
  - name: payments
    match: {capabilities: payment}
    when: "amount > 1000"
    requires: [amount]
    decision: require_approval
    stages:
      - {name: a, approvers: [finance]}
      - {name: b, approvers: [security]}
  - name: bulk
    when: "affected_records > 100 || amount > 50000"
    decision: require_approval
  - name: reads
    match: {action: "read_*"}
    decision: allow
    fail_open: true
  - name: quiet-reads
    match: {action: "*.get*", agent: {in: [bot, ops]}}
    decision: allow
    escalation: false
  - name: forced
    match: {args.force: true}
    decision: deny
  - name: regex-env
    match: {environment: {regex: "prod.*"}, recipients: {exists: true}}
    decision: notify
  - name: external
    when: 'environment.startsWith("prod") && "pii" in capabilities'
    decision: suggest
  - name: names
    when: 'action.endsWith(".delete_all")'
    decision: deny
  - name: big-amounts
    match: {amount: {gte: 1000}, currency: EUR}
    decision: notify
  - name: rows
    match: {args.rows: {lt: 10}, args.mode: hard}
    decision: suggest
  - name: either-currency
    match: {currency: [USD, GBP], recipients: {exists: false}}
    decision: notify
  - name: globbed
    match: {currency: "E*", args.table: {regex: "user.*"}}
    decision: require_approval
  - name: deep
    match: {args.target.zone: eu}
    decision: notify
  - name: two-required
    match: {action: [scale, db.write]}
    when: "amount > 10 && affected_records > 10"
    requires: [amount, affected_records]
    decision: require_approval
  - name: nested-required
    match: {action: db.write}
    requires: [args.rows]
    decision: notify
  - name: library-only
    match: {action: [other, scale]}
    when: "size(recipients) > 1"
    decision: require_approval
  - name: allowed-quietly
    match: {action: other, amount: {lt: 5}}
    decision: allow
    escalation: false
"""

names = st.sampled_from(
    ["deploy", "scale", "send_payment", "read_file", "db.get_row", "db.delete_all",
     "db.write", "invoice.create", "other"]
)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 100_000), st.floats(allow_nan=True),
    st.text(max_size=5),
)
actions = st.fixed_dictionaries(
    {"action": names},
    optional={
        "agent": st.one_of(st.sampled_from(["ops", "bot", "billing", "x"]), scalars),
        "environment": st.one_of(st.sampled_from(["production", "staging", "prod-eu", "dev"]),
                                 scalars),
        "capabilities": st.one_of(
            st.lists(st.sampled_from(["payment", "pii", "shell"]), max_size=3), scalars,
            st.lists(scalars, max_size=2),
        ),
        "amount": st.one_of(st.sampled_from([5, 1000, 1000.5, 60_000]), scalars,
                            st.lists(st.sampled_from([5, 2000]), max_size=2)),
        "affected_records": st.one_of(st.sampled_from([1, 101, 5000]), scalars),
        "confidence": st.one_of(st.floats(0, 1), st.sampled_from([0, 0.0, -0.0, 0.5, 1]),
                                scalars),
        "recipients": st.one_of(st.lists(st.text(max_size=3), max_size=2), scalars),
        "risk": st.one_of(st.sampled_from(["low", "medium", "high"]), scalars),
        "currency": st.one_of(st.sampled_from(["EUR", "USD", "GBP", "ECU"]), scalars),
        "args": st.one_of(
            st.fixed_dictionaries({}, optional={
                "force": scalars,
                "rows": st.one_of(st.sampled_from([0, 9.5, 10, 1e400]), scalars,
                                  st.lists(scalars, max_size=2)),
                "mode": st.one_of(st.just("hard"), scalars, st.lists(st.just("hard"))),
                "table": st.one_of(st.sampled_from(["users", "user_x", "orders"]), scalars),
                "target": st.one_of(st.fixed_dictionaries({}, optional={"zone": scalars}),
                                    st.just({"zone": "eu"}), scalars),
            }),
            scalars,
        ),
    },
)


def _shape(r: PolicyResult) -> tuple[Any, ...]:
    return (r.decision, r.rules, r.reasons, r.risk, r.requirements, r.fail_open, r.errors,
            r.level)


POLICY_OBJ = load_policy_text(POLICY, "paths.yaml")


@settings(max_examples=1000, deadline=None)
@given(actions)
def test_shortcut_and_general_paths_agree(action: dict[str, Any]) -> None:
    reference = POLICY_OBJ._evaluate_general(action, NO_FACTS)
    POLICY_OBJ.evaluate(action)  # builds the shortcut for this context
    assert _shape(POLICY_OBJ.evaluate(action)) == _shape(reference)
    assert _shape(POLICY_OBJ.evaluate(dict(action))) == _shape(reference)


@settings(max_examples=300, deadline=None)
@given(st.lists(actions, min_size=2, max_size=8))
def test_a_fresh_policy_agrees_whatever_came_before(batch: list[dict[str, Any]]) -> None:
    # Contexts, generated tests and results are shared between action names and cached
    # per policy: a run of actions must not leave anything that changes a later answer.
    policy = load_policy_text(POLICY, "paths.yaml")
    for action in batch + batch[::-1]:
        assert _shape(policy.evaluate(action)) == _shape(
            policy._evaluate_general(action, NO_FACTS)
        )


@settings(max_examples=200, deadline=None)
@given(actions, st.booleans(), st.integers(0, 3))
def test_facts_take_the_general_path_and_still_agree(
    action: dict[str, Any], novel: bool, failures: int
) -> None:
    facts = Facts(novel=novel, failures=failures)
    assert _shape(POLICY_OBJ.evaluate(action, facts)) == _shape(
        POLICY_OBJ._evaluate_general(action, facts)
    )


def test_cached_results_are_shared_and_unchanged() -> None:
    a = {"action": "deploy", "agent": "x", "environment": "production"}
    first = POLICY_OBJ.evaluate(a)
    second = POLICY_OBJ.evaluate(dict(a))
    assert first.decision.value == "require_approval"
    assert first.rules == ("prod-deploys",)
    assert _shape(first) == _shape(second)
