"""SPEC §3, in its order: scope, matching, baseline, result, escalation, requirements, reasons."""

from __future__ import annotations

import json
from typing import Any

import pytest

from interlock.policy import Decision, Facts, Level, Policy, Risk, load_policy_text

ALLOW, NOTIFY, REQUIRE, SUGGEST, DENY = (
    Decision.ALLOW,
    Decision.NOTIFY,
    Decision.REQUIRE_APPROVAL,
    Decision.SUGGEST,
    Decision.DENY,
)


def policy_of(rules: list[dict[str, Any]] | None = None, **sections: Any) -> Policy:
    """A policy from plain data (JSON is YAML), version 1."""
    doc: dict[str, Any] = {"version": 1, **sections}
    if rules is not None:
        doc["rules"] = rules
    return load_policy_text(json.dumps(doc), "policy.yaml")


def one_rule(match: dict[str, Any], decision: str = "deny", **extra: Any) -> Policy:
    return policy_of([{"name": "r", "match": match, "decision": decision, **extra}])


def matches(policy: Policy, action: dict[str, Any]) -> bool:
    """Whether rule `r` decided (the baseline here is `allow`)."""
    result = policy.evaluate({"action": "act", **action})
    return "r" in result.rules


RISKS = {"high": ["h_*"], "low": ["l_*"]}  # anything else is medium
ACTION_OF = {Risk.LOW: "l_read", Risk.MEDIUM: "m_change", Risk.HIGH: "h_drop"}

MATRIX = {
    Level.SUPERVISED: {Risk.LOW: REQUIRE, Risk.MEDIUM: REQUIRE, Risk.HIGH: REQUIRE},
    Level.GUIDED: {Risk.LOW: ALLOW, Risk.MEDIUM: REQUIRE, Risk.HIGH: REQUIRE},
    Level.AUTONOMOUS: {Risk.LOW: ALLOW, Risk.MEDIUM: ALLOW, Risk.HIGH: REQUIRE},
    Level.FULL_AUTO: {Risk.LOW: ALLOW, Risk.MEDIUM: ALLOW, Risk.HIGH: NOTIFY},
}
CELLS = [(lv, r, MATRIX[lv][r]) for lv in Level for r in Risk]


# --- 1. scope ---------------------------------------------------------------------------------


def test_action_outside_the_agent_scope_is_denied() -> None:
    policy = policy_of(agents={"billing-bot": {"actions": ["invoice.*", "refund"]}})
    result = policy.evaluate({"action": "deploy", "agent": "billing-bot"})
    assert result.decision is DENY
    assert result.rules == ()
    assert any("scope" in r and "deploy" in r for r in result.reasons)


def test_scope_is_checked_before_any_rule() -> None:
    policy = policy_of(
        [{"name": "anything-goes", "decision": "allow"}],
        agents={"billing-bot": {"actions": ["invoice.*"]}},
    )
    assert policy.evaluate({"action": "deploy", "agent": "billing-bot"}).decision is DENY


@pytest.mark.parametrize("name", ["invoice.create", "invoice.void", "refund"])
def test_action_inside_the_scope_goes_on_to_the_rules(name: str) -> None:
    policy = policy_of(agents={"billing-bot": {"actions": ["invoice.*", "refund"]}})
    assert policy.evaluate({"action": name, "agent": "billing-bot"}).decision is ALLOW


def test_agents_without_a_scope_are_not_limited() -> None:
    policy = policy_of(agents={"billing-bot": {"actions": ["invoice.*"]}})
    assert policy.evaluate({"action": "deploy", "agent": "ops-agent"}).decision is ALLOW
    assert policy.evaluate({"action": "deploy"}).decision is ALLOW


# --- 2. matching: operators -------------------------------------------------------------------

OPERATOR_CASES = [
    # (field, spec, present value that matches, present value that does not)
    ("amount", {"gt": 100}, 101, 100),
    ("amount", {"gte": 100}, 100, 99.5),
    ("amount", {"lt": 100}, 99, 100),
    ("amount", {"lte": 100}, 100, 100.01),
    ("amount", {"eq": 100}, 100.0, 101),
    ("amount", {"ne": 100}, 7, 100),
    ("currency", {"eq": "EUR"}, "EUR", "USD"),
    ("currency", {"ne": "EUR"}, "USD", "EUR"),
    ("currency", {"in": ["EUR", "GBP"]}, "GBP", "USD"),
    ("currency", {"not_in": ["EUR", "GBP"]}, "USD", "EUR"),
    ("currency", {"regex": "E[A-Z]{2}"}, "EUR", "XEUR"),
    ("currency", {"exists": True}, "USD", None),
    ("args.table", {"regex": "user_.*"}, "user_emails", "users"),
    ("args.limit", {"gt": 1000}, 5000, 10),
    ("args.mode", {"in": ["force", "hard"]}, "force", "soft"),
]


@pytest.mark.parametrize(("field", "spec", "yes", "no"), OPERATOR_CASES)
def test_operator_on_a_present_field(field: str, spec: dict[str, Any], yes: Any, no: Any) -> None:
    policy = one_rule({field: spec})

    def action(value: Any) -> dict[str, Any]:
        if field.startswith("args."):
            return {"args": {field.split(".", 1)[1]: value}}
        return {field: value}

    assert matches(policy, action(yes))
    assert not matches(policy, action(no) if no is not None else {})


@pytest.mark.parametrize(("field", "spec", "yes", "no"), OPERATOR_CASES)
def test_operator_on_a_missing_field_does_not_match(
    field: str, spec: dict[str, Any], yes: Any, no: Any
) -> None:
    policy = one_rule({field: spec})
    assert not matches(policy, {})
    assert not matches(policy, {"args": {}})
    assert not matches(policy, {"args": {"other": 1}})


def test_null_counts_as_missing() -> None:
    assert not matches(one_rule({"amount": {"ne": 5}}), {"amount": None})
    assert not matches(one_rule({"amount": {"exists": True}}), {"amount": None})
    assert matches(one_rule({"amount": {"exists": False}}), {"amount": None})


def test_exists_false_matches_only_a_missing_field() -> None:
    policy = one_rule({"args.dry_run": {"exists": False}})
    assert matches(policy, {})
    assert matches(policy, {"args": {}})
    assert not matches(policy, {"args": {"dry_run": False}})


@pytest.mark.parametrize(
    ("spec", "value", "expected"),
    [
        ({"gt": "m"}, ["a", "z"], True),
        ({"gt": "m"}, ["a", "b"], False),
        ({"eq": "payment"}, ["read", "payment"], True),
        ({"eq": "payment"}, ["read"], False),
        ({"ne": "payment"}, ["payment"], False),
        ({"ne": "payment"}, ["payment", "read"], True),
        ({"in": ["payment", "refund"]}, ["read", "refund"], True),
        ({"in": ["payment", "refund"]}, ["read"], False),
        ({"not_in": ["payment"]}, ["payment"], False),
        ({"not_in": ["payment"]}, ["payment", "read"], True),
        ({"regex": "pay.*"}, ["read", "payments"], True),
        ({"regex": "pay"}, ["payments"], False),  # a full match, not a search
        ({"exists": True}, ["x"], True),
        ({"exists": False}, ["x"], False),
        ("payment", ["read", "payment"], True),
        ("pay*", ["read", "payout"], True),
        ("pay*", ["read"], False),
        (["refund", "payment"], ["x", "payment"], True),
        (["refund", "payment"], ["x"], False),
    ],
)
def test_capabilities_match_when_any_element_matches(
    spec: Any, value: list[str], expected: bool
) -> None:
    assert matches(one_rule({"capabilities": spec}), {"capabilities": value}) is expected


@pytest.mark.parametrize(
    ("spec", "value", "expected"),
    [
        ({"regex": r".*@evil\.com"}, ["ann@ok.com", "eve@evil.com"], True),
        ({"regex": r".*@evil\.com"}, ["ann@ok.com"], False),
        ("*@partner.io", ["ann@ok.com", "bob@partner.io"], True),
        ({"in": ["ceo@corp.com"]}, ["x@corp.com", "ceo@corp.com"], True),
        ({"lt": "b"}, ["zed", "adam"], True),
        ({"lte": "a"}, ["zed", "bob"], False),
        ({"gte": "z"}, ["zed"], True),
    ],
)
def test_recipients_match_when_any_element_matches(
    spec: Any, value: list[str], expected: bool
) -> None:
    assert matches(one_rule({"recipients": spec}), {"recipients": value}) is expected


def test_list_field_missing_does_not_match() -> None:
    assert not matches(one_rule({"capabilities": "payment"}), {})
    assert not matches(one_rule({"recipients": {"regex": ".*"}}), {})


@pytest.mark.parametrize(
    ("spec", "value"),
    [
        ({"gt": 10}, "20"),
        ({"gt": 10}, True),
        ({"eq": 1}, True),
        ({"eq": True}, 1),
        ({"lt": "b"}, 1),
        ({"regex": "1.*"}, 123),
        ({"in": [1, 2]}, "1"),
    ],
)
def test_operators_do_not_confuse_types(spec: dict[str, Any], value: Any) -> None:
    assert not matches(one_rule({"args.v": spec}), {"args": {"v": value}})


def test_several_operators_in_one_map_must_all_hold() -> None:
    policy = one_rule({"amount": {"gt": 100, "lte": 1000}})
    assert matches(policy, {"amount": 500})
    assert not matches(policy, {"amount": 50})
    assert not matches(policy, {"amount": 5000})


def test_every_match_key_must_hold() -> None:
    policy = one_rule({"action": "deploy", "environment": "production"})
    assert "r" in policy.evaluate({"action": "deploy", "environment": "production"}).rules
    assert "r" not in policy.evaluate({"action": "deploy", "environment": "staging"}).rules
    assert "r" not in policy.evaluate({"action": "scale", "environment": "production"}).rules


# --- 2. matching: globs, lists and args paths --------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("*.delete*", "db.delete_rows", True),
        ("*.delete*", "db.remove_rows", False),
        ("*.delete*", "delete", False),
        ("read_?", "read_a", True),
        ("read_?", "read_ab", False),
        ("deploy_[ps]*", "deploy_production", True),
        ("deploy_[ps]*", "deploy_dev", False),
        ("deploy", "deploy_production", False),
        ("Deploy", "deploy", False),
        ("iam.*", "iam.create_user", True),
    ],
)
def test_action_globs(pattern: str, name: str, expected: bool) -> None:
    policy = one_rule({"action": pattern})
    assert ("r" in policy.evaluate({"action": name}).rules) is expected


def test_a_list_is_any_of_and_may_mix_literals_and_globs() -> None:
    policy = one_rule({"action": ["deploy", "scale", "*.delete*"]})
    for name in ("deploy", "scale", "db.delete_rows"):
        assert "r" in policy.evaluate({"action": name}).rules
    assert "r" not in policy.evaluate({"action": "read_x"}).rules


def test_glob_on_other_fields() -> None:
    policy = one_rule({"environment": "prod*", "agent": ["ops-*", "billing-bot"]})
    assert matches(policy, {"environment": "production", "agent": "ops-7"})
    assert matches(policy, {"environment": "prod", "agent": "billing-bot"})
    assert not matches(policy, {"environment": "staging", "agent": "ops-7"})
    assert not matches(policy, {"environment": "production", "agent": "support"})


def test_args_paths_reach_nested_values() -> None:
    policy = one_rule({"args.target.region": "eu-*", "args.table": "users"})
    yes = {"args": {"table": "users", "target": {"region": "eu-west-1"}}}
    assert matches(policy, yes)
    assert not matches(policy, {"args": {"table": "users", "target": {"region": "us-east"}}})
    assert not matches(policy, {"args": {"table": "users", "target": "eu-west-1"}})
    assert not matches(policy, {"args": {"table": "users"}})
    assert not matches(policy, {"args": "users"})
    assert not matches(policy, {"args": None})


def test_literal_numbers_and_booleans_in_match() -> None:
    assert matches(one_rule({"args.force": True}), {"args": {"force": True}})
    assert not matches(one_rule({"args.force": True}), {"args": {"force": 1}})
    assert matches(one_rule({"affected_records": 0}), {"affected_records": 0})
    assert not matches(one_rule({"affected_records": 0}), {"affected_records": False})


# --- 3. baseline: the autonomy matrix -----------------------------------------------------------


@pytest.mark.parametrize(("level", "risk", "expected"), CELLS)
def test_autonomy_matrix_cell_by_default_level(
    level: Level, risk: Risk, expected: Decision
) -> None:
    policy = policy_of(risk=RISKS, autonomy={"default": level.value})
    result = policy.evaluate({"action": ACTION_OF[risk], "agent": "some-agent"})
    assert result.decision is expected
    assert result.risk is risk
    assert result.level is level
    assert result.rules == ()
    assert result.reasons == (f"baseline: {level.value} agent, {risk.value} risk",)


@pytest.mark.parametrize(("level", "risk", "expected"), CELLS)
def test_autonomy_matrix_cell_by_agent_level(level: Level, risk: Risk, expected: Decision) -> None:
    policy = policy_of(
        risk=RISKS, autonomy={"default": "supervised", "agents": {"bot": level.value}}
    )
    assert policy.evaluate({"action": ACTION_OF[risk], "agent": "bot"}).decision is expected
    other = policy.evaluate({"action": ACTION_OF[risk], "agent": "someone-else"})
    assert other.decision is REQUIRE


@pytest.mark.parametrize(("level", "risk", "expected"), CELLS)
def test_autonomy_matrix_cell_by_facts_level(level: Level, risk: Risk, expected: Decision) -> None:
    policy = policy_of(risk=RISKS, autonomy={"default": "supervised"})
    result = policy.evaluate({"action": ACTION_OF[risk], "agent": "bot"}, Facts(level=level))
    assert result.decision is expected
    assert result.level is level


@pytest.mark.parametrize(("level", "risk", "expected"), CELLS)
def test_report_turns_the_matrix_allow_into_notify(
    level: Level, risk: Risk, expected: Decision
) -> None:
    policy = policy_of(risk=RISKS, autonomy={"default": level.value, "report": True})
    result = policy.evaluate({"action": ACTION_OF[risk]})
    assert result.decision is (NOTIFY if expected is ALLOW else expected)


def test_report_does_not_touch_an_allow_rule() -> None:
    policy = policy_of(
        [{"name": "ok", "match": {"action": "l_read"}, "decision": "allow"}],
        risk=RISKS,
        autonomy={"default": "autonomous", "report": True},
    )
    assert policy.evaluate({"action": "l_read"}).decision is ALLOW


def test_max_level_caps_the_configured_levels() -> None:
    policy = policy_of(
        risk=RISKS,
        autonomy={"default": "full_auto", "agents": {"bot": "full_auto"}, "max_level": "guided"},
    )
    for agent in ("bot", "other"):
        result = policy.evaluate({"action": "m_change", "agent": agent})
        assert result.decision is REQUIRE
        assert result.level is Level.GUIDED


def test_max_level_caps_the_facts_level() -> None:
    policy = policy_of(risk=RISKS, autonomy={"default": "guided", "max_level": "autonomous"})
    result = policy.evaluate({"action": "h_drop"}, Facts(level=Level.FULL_AUTO))
    assert result.level is Level.AUTONOMOUS
    assert result.decision is REQUIRE


def test_facts_level_overrides_the_configured_level() -> None:
    policy = policy_of(risk=RISKS, autonomy={"default": "guided", "agents": {"bot": "full_auto"}})
    assert policy.evaluate({"action": "m_change", "agent": "bot"}).decision is ALLOW
    demoted = policy.evaluate({"action": "m_change", "agent": "bot"}, Facts(level=Level.GUIDED))
    assert demoted.decision is REQUIRE


def test_unclassified_actions_are_medium_risk() -> None:
    policy = policy_of(risk=RISKS, autonomy={"default": "guided"})
    result = policy.evaluate({"action": "something_new"})
    assert result.risk is Risk.MEDIUM


def test_high_risk_wins_over_low_when_both_globs_match() -> None:
    policy = policy_of(risk={"high": ["*.delete*"], "low": ["db.*"]}, autonomy={})
    assert policy.evaluate({"action": "db.delete_rows"}).risk is Risk.HIGH
    assert policy.evaluate({"action": "db.get_rows"}).risk is Risk.LOW


# --- 3. baseline: environments and defaults.decision -------------------------------------------


@pytest.mark.parametrize(("level", "risk", "expected"), CELLS)
def test_environment_default_raises_but_never_lowers_the_matrix(
    level: Level, risk: Risk, expected: Decision
) -> None:
    policy = policy_of(
        risk=RISKS,
        autonomy={"default": level.value},
        environments={
            "production": {"default": "require_approval"},
            "sandbox": {"default": "allow"},
            "frozen": {"default": "deny"},
        },
    )
    action = {"action": ACTION_OF[risk]}
    prod = policy.evaluate({**action, "environment": "production"}).decision
    assert prod.rank == max(expected.rank, REQUIRE.rank)
    assert policy.evaluate({**action, "environment": "sandbox"}).decision is expected
    assert policy.evaluate({**action, "environment": "frozen"}).decision is DENY
    assert policy.evaluate({**action, "environment": "unlisted"}).decision is expected


@pytest.mark.parametrize("decision", list(Decision))
def test_without_autonomy_the_baseline_is_defaults_decision(decision: Decision) -> None:
    policy = policy_of(defaults={"decision": decision.value}, risk=RISKS)
    for name in ACTION_OF.values():
        result = policy.evaluate({"action": name})
        assert result.decision is decision
        assert result.level is None


def test_without_autonomy_and_defaults_the_baseline_is_allow() -> None:
    assert policy_of().evaluate({"action": "anything"}).decision is ALLOW


def test_environment_raises_the_defaults_decision_but_never_lowers_it() -> None:
    policy = policy_of(
        defaults={"decision": "notify"},
        environments={"production": {"default": "require_approval"}, "dev": {"default": "allow"}},
    )
    assert policy.evaluate({"action": "x", "environment": "production"}).decision is REQUIRE
    assert policy.evaluate({"action": "x", "environment": "dev"}).decision is NOTIFY
    assert policy.evaluate({"action": "x"}).decision is NOTIFY


# --- 4. result ---------------------------------------------------------------------------------


def test_strictest_of_matching_rules_and_baseline() -> None:
    policy = policy_of(
        [
            {"name": "tell", "match": {"action": "x"}, "decision": "notify"},
            {"name": "ask", "match": {"action": "x"}, "decision": "require_approval"},
            {"name": "human", "match": {"action": "x", "agent": "a"}, "decision": "suggest"},
            {"name": "no", "match": {"action": "x", "agent": "b"}, "decision": "deny"},
        ]
    )
    assert policy.evaluate({"action": "x"}).decision is REQUIRE
    assert policy.evaluate({"action": "x"}).rules == ("ask",)
    assert policy.evaluate({"action": "x", "agent": "a"}).decision is SUGGEST
    assert policy.evaluate({"action": "x", "agent": "a"}).rules == ("human",)
    assert policy.evaluate({"action": "x", "agent": "b"}).decision is DENY
    assert policy.evaluate({"action": "x", "agent": "b"}).rules == ("no",)


def test_all_rules_of_the_strictest_decision_are_named() -> None:
    policy = policy_of(
        [
            {"name": "one", "match": {"action": "x"}, "decision": "deny"},
            {"name": "two", "match": {"environment": "production"}, "decision": "deny"},
            {"name": "three", "match": {"action": "x"}, "decision": "suggest"},
        ]
    )
    result = policy.evaluate({"action": "x", "environment": "production"})
    assert result.decision is DENY
    assert sorted(result.rules) == ["one", "two"]


def test_baseline_stricter_than_the_rules_decides() -> None:
    policy = policy_of(
        [{"name": "tell", "match": {"action": "m_change"}, "decision": "notify"}],
        risk=RISKS,
        autonomy={"default": "supervised"},
    )
    result = policy.evaluate({"action": "m_change"})
    assert result.decision is REQUIRE
    assert "baseline: supervised agent, medium risk" in result.reasons


def test_rule_stricter_than_the_baseline_decides() -> None:
    policy = policy_of(
        [{"name": "no", "match": {"action": "l_read"}, "decision": "deny"}],
        risk=RISKS,
        autonomy={"default": "full_auto"},
    )
    result = policy.evaluate({"action": "l_read"})
    assert (result.decision, result.rules, result.reasons) == (DENY, ("no",), ("rule no",))


def test_allow_rule_removes_the_baseline() -> None:
    policy = policy_of(
        [{"name": "ok", "match": {"action": "h_drop"}, "decision": "allow"}],
        risk=RISKS,
        autonomy={"default": "supervised"},
        environments={"production": {"default": "require_approval"}},
    )
    result = policy.evaluate({"action": "h_drop", "environment": "production"})
    assert result.decision is ALLOW
    assert result.rules == ("ok",)
    assert result.requirements is None


def test_allow_rule_removes_the_defaults_decision_baseline() -> None:
    policy = policy_of(
        [{"name": "ok", "match": {"action": "x"}, "decision": "allow"}],
        defaults={"decision": "deny"},
    )
    assert policy.evaluate({"action": "x"}).decision is ALLOW
    assert policy.evaluate({"action": "y"}).decision is DENY


@pytest.mark.parametrize("other", ["notify", "require_approval", "suggest", "deny"])
def test_allow_rule_never_overrides_another_matching_rule(other: str) -> None:
    policy = policy_of(
        [
            {"name": "ok", "match": {"action": "x"}, "decision": "allow"},
            {"name": "other", "match": {"action": "x"}, "decision": other},
        ]
    )
    result = policy.evaluate({"action": "x"})
    assert result.decision is Decision(other)
    assert result.rules == ("other",)


def test_allow_rule_before_or_after_changes_nothing() -> None:
    rules = [
        {"name": "ok", "match": {"action": "x"}, "decision": "allow"},
        {"name": "ask", "match": {"action": "x"}, "decision": "require_approval"},
    ]
    assert policy_of(rules).evaluate({"action": "x"}).decision is REQUIRE
    assert policy_of(rules[::-1]).evaluate({"action": "x"}).decision is REQUIRE


def test_allow_rule_with_a_notify_rule_still_removes_a_stricter_baseline() -> None:
    policy = policy_of(
        [
            {"name": "ok", "match": {"action": "m_change"}, "decision": "allow"},
            {"name": "tell", "match": {"action": "m_change"}, "decision": "notify"},
        ],
        risk=RISKS,
        autonomy={"default": "supervised"},
    )
    result = policy.evaluate({"action": "m_change"})
    assert result.decision is NOTIFY
    assert result.rules == ("tell",)


# --- 5. escalation -----------------------------------------------------------------------------

ESCALATING = {
    "confidence_below": 0.7,
    "novel_action": True,
    "novel_recipient": True,
    "repeated_failures": 3,
}
SIGNALS = {
    "confidence": ({"confidence": 0.55}, Facts()),
    "novel action": ({}, Facts(novel=True)),
    "novel recipient": ({}, Facts(novel_recipients=("eve@evil.com",))),
    "repeated failures": ({}, Facts(failures=3)),
}


def escalating_policy(**extra: Any) -> Policy:
    return policy_of(
        [
            {"name": "ok", "match": {"action": "allowed"}, "decision": "allow"},
            {
                "name": "ok-quiet",
                "match": {"action": "quiet"},
                "decision": "allow",
                "escalation": False,
            },
            {"name": "tell", "match": {"action": "told"}, "decision": "notify"},
            {
                "name": "ask",
                "match": {"action": "asked"},
                "decision": "require_approval",
                "approvers": ["owners"],
            },
            {"name": "human", "match": {"action": "suggested"}, "decision": "suggest"},
            {"name": "no", "match": {"action": "denied"}, "decision": "deny"},
        ],
        defaults={"approvers": ["on-call"]},
        escalation=ESCALATING,
        **extra,
    )


@pytest.mark.parametrize("signal", list(SIGNALS))
@pytest.mark.parametrize("name", ["allowed", "told", "unmatched"])
def test_escalation_raises_allow_and_notify_to_require_approval(signal: str, name: str) -> None:
    extra, facts = SIGNALS[signal]
    result = escalating_policy().evaluate({"action": name, "agent": "bot", **extra}, facts)
    assert result.decision is REQUIRE
    assert any(r.startswith(signal) for r in result.reasons), result.reasons
    assert result.requirements is not None
    assert [g.source for g in result.requirements.gates] == ["defaults"]
    assert result.requirements.gates[0].stages[0].approvers == ("on-call",)
    assert result.fail_open is False


@pytest.mark.parametrize("signal", list(SIGNALS))
@pytest.mark.parametrize(
    ("name", "expected"), [("asked", REQUIRE), ("suggested", SUGGEST), ("denied", DENY)]
)
def test_escalation_never_lowers(signal: str, name: str, expected: Decision) -> None:
    extra, facts = SIGNALS[signal]
    policy = escalating_policy()
    calm = policy.evaluate({"action": name})
    result = policy.evaluate({"action": name, **extra}, facts)
    assert result.decision is expected
    assert result.rules == calm.rules
    if expected is REQUIRE:
        assert result.requirements == calm.requirements  # the rule's own gate stays


@pytest.mark.parametrize("signal", list(SIGNALS))
def test_escalation_false_on_an_allow_rule(signal: str) -> None:
    extra, facts = SIGNALS[signal]
    result = escalating_policy().evaluate({"action": "quiet", **extra}, facts)
    assert result.decision is ALLOW
    assert result.rules == ("ok-quiet",)


def test_escalation_false_does_not_shield_a_notify_rule() -> None:
    policy = policy_of(
        [
            {"name": "quiet", "match": {"action": "x"}, "decision": "allow", "escalation": False},
            {"name": "tell", "match": {"action": "x"}, "decision": "notify"},
        ],
        escalation=ESCALATING,
    )
    assert policy.evaluate({"action": "x", "confidence": 0.1}).decision is REQUIRE


def test_no_signal_no_escalation() -> None:
    policy = escalating_policy()
    facts = Facts(novel=False, novel_recipients=(), failures=2)
    for name, expected in [("allowed", ALLOW), ("told", NOTIFY), ("unmatched", ALLOW)]:
        result = policy.evaluate({"action": name, "confidence": 0.7}, facts)
        assert result.decision is expected


def test_missing_confidence_triggers_nothing() -> None:
    policy = escalating_policy()
    assert policy.evaluate({"action": "allowed"}).decision is ALLOW
    assert policy.evaluate({"action": "allowed", "confidence": None}).decision is ALLOW


def test_high_confidence_never_bypasses_a_rule() -> None:
    policy = escalating_policy()
    for name, expected in [("asked", REQUIRE), ("suggested", SUGGEST), ("denied", DENY)]:
        assert policy.evaluate({"action": name, "confidence": 1.0}).decision is expected


def test_high_confidence_never_bypasses_the_baseline() -> None:
    policy = policy_of(risk=RISKS, autonomy={"default": "guided"}, escalation=ESCALATING)
    assert policy.evaluate({"action": "m_change", "confidence": 0.99}).decision is REQUIRE


def test_signals_the_policy_does_not_enable_do_nothing() -> None:
    policy = policy_of(escalation={"confidence_below": 0.7})
    facts = Facts(novel=True, novel_recipients=("x@y.z",), failures=99)
    assert policy.evaluate({"action": "x"}, facts).decision is ALLOW
    assert policy_of().evaluate({"action": "x", "confidence": 0.0}).decision is ALLOW


def test_escalation_raises_a_notify_baseline() -> None:
    policy = policy_of(risk=RISKS, autonomy={"default": "full_auto"}, escalation=ESCALATING)
    assert policy.evaluate({"action": "h_drop"}).decision is NOTIFY
    raised = policy.evaluate({"action": "h_drop"}, Facts(novel=True))
    assert raised.decision is REQUIRE


def test_confidence_reason_in_plain_words() -> None:
    result = escalating_policy().evaluate({"action": "allowed", "confidence": 0.55})
    assert "confidence 0.55 < 0.7" in result.reasons


# --- 2. requires and CEL -----------------------------------------------------------------------


def cel_policy(decision: str = "notify", when: str = "amount > 100", **extra: Any) -> Policy:
    return policy_of(
        [{"name": "r", "match": {"action": "pay"}, "when": when, "decision": decision, **extra}],
        defaults={"approvers": ["on-call"]},
    )


def test_when_true_and_false() -> None:
    policy = cel_policy()
    assert policy.evaluate({"action": "pay", "amount": 500}).decision is NOTIFY
    assert policy.evaluate({"action": "pay", "amount": 50}).decision is ALLOW


def test_when_is_checked_only_after_match_holds() -> None:
    result = cel_policy().evaluate({"action": "refund", "amount": "not a number"})
    assert result.decision is ALLOW
    assert result.errors == ()


def test_cel_missing_field_is_false() -> None:
    result = cel_policy(decision="deny").evaluate({"action": "pay"})
    assert result.decision is ALLOW
    assert result.rules == ()
    assert result.errors == ()


def test_cel_missing_nested_field_is_false() -> None:
    policy = cel_policy(decision="deny", when="args.limit > 10")
    assert policy.evaluate({"action": "pay", "args": {}}).decision is ALLOW
    assert policy.evaluate({"action": "pay"}).decision is ALLOW
    assert policy.evaluate({"action": "pay", "args": {"limit": 11}}).decision is DENY


@pytest.mark.parametrize("decision", ["allow", "notify"])
@pytest.mark.parametrize("bad", ["lots", [1], {"x": 1}, True])
def test_cel_type_error_applies_the_rule_at_least_require_approval(decision: str, bad: Any) -> None:
    result = cel_policy(decision=decision).evaluate({"action": "pay", "amount": bad})
    assert result.decision is REQUIRE
    assert result.rules == ("r",)
    assert len(result.errors) == 1
    assert "CEL error" in result.errors[0]
    assert any("rule r" in r and "CEL error" in r for r in result.reasons)
    assert result.requirements is not None
    assert [g.source for g in result.requirements.gates] == ["defaults"]
    assert result.requirements.gates[0].stages[0].approvers == ("on-call",)


@pytest.mark.parametrize("decision", ["suggest", "deny"])
def test_cel_type_error_keeps_a_stricter_decision(decision: str) -> None:
    result = cel_policy(decision=decision).evaluate({"action": "pay", "amount": "lots"})
    assert result.decision is Decision(decision)
    assert result.rules == ("r",)
    assert result.errors and "CEL error" in result.errors[0]


def test_cel_type_error_on_a_require_approval_rule_keeps_its_gate() -> None:
    policy = cel_policy(decision="require_approval", approvers=["finance"])
    result = policy.evaluate({"action": "pay", "amount": "lots"})
    assert result.decision is REQUIRE
    assert result.errors
    assert result.requirements is not None
    assert any(g.stages[0].approvers == ("finance",) for g in result.requirements.gates)


def test_cel_cost_limit_applies_the_rule() -> None:
    policy = cel_policy(decision="notify", when="recipients.exists(r, r.endsWith('@evil.com'))")
    assert policy.evaluate({"action": "pay", "recipients": ["a@evil.com"]}).decision is NOTIFY
    assert policy.evaluate({"action": "pay", "recipients": ["a@ok.com"]}).decision is ALLOW
    flood = policy.evaluate({"action": "pay", "recipients": ["a@ok.com"] * 200_000})
    assert flood.decision is REQUIRE
    assert flood.errors and "cost" in flood.errors[0]


def test_cel_sees_risk_and_facts() -> None:
    policy = policy_of(
        [
            {"name": "r", "when": "risk == 'high' && failures >= 2", "decision": "deny"},
            {"name": "n", "when": "novel", "decision": "suggest"},
        ],
        risk=RISKS,
    )
    assert policy.evaluate({"action": "h_x"}, Facts(failures=2)).decision is DENY
    assert policy.evaluate({"action": "h_x"}, Facts(failures=1)).decision is ALLOW
    assert policy.evaluate({"action": "l_x"}, Facts(failures=5)).decision is ALLOW
    assert policy.evaluate({"action": "l_x"}, Facts(novel=True)).decision is SUGGEST
    assert policy.evaluate({"action": "h_x", "risk": "high"}).risk is Risk.HIGH


def test_cel_sees_a_risk_raised_by_the_hint() -> None:
    policy = policy_of([{"name": "r", "when": "risk == 'high'", "decision": "deny"}], risk=RISKS)
    assert policy.evaluate({"action": "l_x", "risk": "high"}).decision is DENY


@pytest.mark.parametrize("amount", [None, "missing"])
def test_requires_missing_or_null_applies_the_rule(amount: Any) -> None:
    policy = cel_policy(decision="notify", requires=["amount"])
    action: dict[str, Any] = {"action": "pay"}
    if amount is None:
        action["amount"] = None
    result = policy.evaluate(action)
    assert result.decision is NOTIFY
    assert result.rules == ("r",)
    assert any("amount" in r for r in result.reasons)


def test_requires_present_falls_back_to_when() -> None:
    policy = cel_policy(decision="notify", requires=["amount"])
    assert policy.evaluate({"action": "pay", "amount": 5}).decision is ALLOW
    assert policy.evaluate({"action": "pay", "amount": 500}).decision is NOTIFY


def test_requires_an_args_path() -> None:
    policy = cel_policy(decision="deny", when="args.rows > 10", requires=["args.rows"])
    assert policy.evaluate({"action": "pay"}).decision is DENY
    assert policy.evaluate({"action": "pay", "args": {"rows": None}}).decision is DENY
    assert policy.evaluate({"action": "pay", "args": {"rows": 3}}).decision is ALLOW


def test_requires_does_not_bypass_match() -> None:
    policy = cel_policy(decision="deny", requires=["amount"])
    assert policy.evaluate({"action": "refund"}).decision is ALLOW


# --- 7. requirements ---------------------------------------------------------------------------


def two_gate_policy() -> Policy:
    return policy_of(
        [
            {
                "name": "prod",
                "match": {"environment": "production"},
                "decision": "require_approval",
                "approvers": ["tech-lead"],
                "timeout": "4h",
                "approval_ttl": "30m",
                "confirm": "typed",
            },
            {
                "name": "money",
                "match": {"capabilities": "payment"},
                "decision": "require_approval",
                "stages": [
                    {"name": "finance", "approvers": ["finance"], "quorum": 2},
                    {"name": "security", "approvers": ["security"]},
                ],
                "timeout": "1h",
                "approval_ttl": "2h",
            },
            {"name": "tell", "match": {"capabilities": "payment"}, "decision": "notify"},
        ],
        defaults={"approvers": ["on-call"], "timeout": "8h", "approval_ttl": "1h"},
    )


def test_each_matching_require_approval_rule_is_its_own_gate() -> None:
    result = two_gate_policy().evaluate(
        {"action": "pay", "environment": "production", "capabilities": ["payment"]}
    )
    assert result.decision is REQUIRE
    assert sorted(result.rules) == ["money", "prod"]
    reqs = result.requirements
    assert reqs is not None
    gates = {g.source: g for g in reqs.gates}
    assert set(gates) == {"prod", "money"}
    assert gates["prod"].stages[0].approvers == ("tech-lead",)
    assert [(s.name, s.approvers, s.quorum) for s in gates["money"].stages] == [
        ("finance", ("finance",), 2),
        ("security", ("security",), 1),
    ]
    assert reqs.timeout == 3600.0
    assert reqs.approval_ttl == 1800.0
    assert reqs.confirm is True


def test_one_gate_keeps_its_own_settings() -> None:
    result = two_gate_policy().evaluate({"action": "pay", "capabilities": ["payment"]})
    reqs = result.requirements
    assert reqs is not None
    assert [g.source for g in reqs.gates] == ["money"]
    assert (reqs.timeout, reqs.approval_ttl, reqs.confirm) == (3600.0, 7200.0, False)


def test_rule_without_its_own_clock_uses_the_defaults() -> None:
    policy = policy_of(
        [{"name": "ask", "decision": "require_approval"}],
        defaults={"approvers": ["on-call"], "timeout": "45s", "approval_ttl": "2d"},
    )
    reqs = policy.evaluate({"action": "x"}).requirements
    assert reqs is not None
    assert reqs.gates[0].source == "ask"
    assert reqs.gates[0].stages[0].approvers == ("on-call",)
    assert (reqs.timeout, reqs.approval_ttl) == (45.0, 172800.0)


def test_baseline_require_approval_uses_the_defaults_gate() -> None:
    policy = policy_of(
        risk=RISKS,
        autonomy={"default": "supervised"},
        defaults={"approvers": ["on-call", "user:ann"], "timeout": "10m", "approval_ttl": "5m"},
    )
    result = policy.evaluate({"action": "l_read"})
    assert result.decision is REQUIRE
    reqs = result.requirements
    assert reqs is not None
    assert len(reqs.gates) == 1
    gate = reqs.gates[0]
    assert gate.source == "defaults"
    assert gate.stages[0].approvers == ("on-call", "user:ann")
    assert (reqs.timeout, reqs.approval_ttl, reqs.confirm) == (600.0, 300.0, False)


@pytest.mark.parametrize("decision", [ALLOW, NOTIFY, SUGGEST, DENY])
def test_requirements_only_with_require_approval(decision: Decision) -> None:
    result = one_rule({"action": "x"}, decision.value).evaluate({"action": "x"})
    assert result.decision is decision
    assert result.requirements is None


def test_parallel_stages_are_kept() -> None:
    policy = policy_of(
        [
            {
                "name": "both",
                "decision": "require_approval",
                "parallel": True,
                "stages": [{"name": "a", "approvers": ["x"]}, {"name": "b", "approvers": ["y"]}],
            }
        ]
    )
    reqs = policy.evaluate({"action": "z"}).requirements
    assert reqs is not None and reqs.gates[0].parallel is True


# --- risk hint ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "hint", "expected"),
    [
        ("l_read", "high", Risk.HIGH),
        ("l_read", "medium", Risk.MEDIUM),
        ("l_read", "low", Risk.LOW),
        ("m_change", "high", Risk.HIGH),
        ("m_change", "low", Risk.MEDIUM),
        ("h_drop", "low", Risk.HIGH),
        ("h_drop", "medium", Risk.HIGH),
        ("l_read", "extreme", Risk.LOW),
        ("l_read", 3, Risk.LOW),
    ],
)
def test_risk_hint_raises_but_never_lowers(name: str, hint: Any, expected: Risk) -> None:
    policy = policy_of(risk=RISKS, autonomy={"default": "guided"})
    result = policy.evaluate({"action": name, "risk": hint})
    assert result.risk is expected
    assert result.decision is MATRIX[Level.GUIDED][expected]


# --- 8. explanation ----------------------------------------------------------------------------


def test_reasons_in_plain_words(spec_policy: Policy) -> None:
    deploy = spec_policy.evaluate(
        {"action": "deploy", "agent": "ops-agent", "environment": "production"}
    )
    assert "rule production-approval" in deploy.reasons
    unsure = spec_policy.evaluate({"action": "read_file", "agent": "x", "confidence": 0.55})
    assert "confidence 0.55 < 0.7" in unsure.reasons
    guided = spec_policy.evaluate({"action": "restart_service", "agent": "x"})
    assert guided.reasons == ("baseline: guided agent, medium risk",)


def test_novelty_and_failure_reasons_name_the_signal() -> None:
    result = escalating_policy().evaluate(
        {"action": "allowed", "agent": "bot", "environment": "staging"},
        Facts(novel=True, novel_recipients=("eve@evil.com",), failures=4),
    )
    text = " | ".join(result.reasons)
    assert "novel action" in text
    assert "eve@evil.com" in text
    assert "repeated failures" in text and "4" in text


def test_result_carries_the_policy_hash(spec_policy: Policy) -> None:
    result = spec_policy.evaluate({"action": "read_x"})
    assert result.policy_hash == spec_policy.hash
    assert len(result.policy_hash) == 64


# --- fail_open ---------------------------------------------------------------------------------


def test_fail_open_only_when_every_matching_rule_sets_it() -> None:
    policy = policy_of(
        [
            {"name": "reads", "match": {"action": "q*"}, "decision": "allow", "fail_open": True},
            {"name": "tell", "match": {"action": "query"}, "decision": "notify",
             "fail_open": True},
            {"name": "plain", "match": {"action": "quick"}, "decision": "allow"},
            {"name": "ask", "match": {"action": "quiz"}, "decision": "require_approval"},
        ]
    )
    assert policy.evaluate({"action": "qa"}).fail_open is True
    assert policy.evaluate({"action": "query"}).fail_open is True
    assert policy.evaluate({"action": "query"}).decision is NOTIFY
    assert policy.evaluate({"action": "quick"}).fail_open is False
    assert policy.evaluate({"action": "quiz"}).fail_open is False
    assert policy.evaluate({"action": "other"}).fail_open is False


def test_escalated_result_is_not_fail_open() -> None:
    policy = policy_of(
        [{"name": "reads", "match": {"action": "q"}, "decision": "allow", "fail_open": True}],
        escalation={"confidence_below": 0.5},
    )
    assert policy.evaluate({"action": "q", "confidence": 0.9}).fail_open is True
    result = policy.evaluate({"action": "q", "confidence": 0.1})
    assert (result.decision, result.fail_open) == (REQUIRE, False)


# --- the SPEC §2 example, end to end ------------------------------------------------------------

SPEC_CASES: list[tuple[str, dict[str, Any], Facts, Decision, tuple[str, ...]]] = [
    (
        "production deploy by a supervised agent",
        {"action": "deploy", "agent": "ops-agent", "environment": "production"},
        Facts(),
        REQUIRE,
        ("production-approval",),
    ),
    (
        "a confident agent still waits for a production scale",
        {"action": "scale", "agent": "deploy-bot", "environment": "production",
         "confidence": 0.99},
        Facts(level=Level.AUTONOMOUS),
        REQUIRE,
        ("production-approval",),
    ),
    (
        "billing-bot outside its scope",
        {"action": "deploy", "agent": "billing-bot"},
        Facts(),
        DENY,
        (),
    ),
    (
        "billing-bot reads within its scope",
        {"action": "read_invoice", "agent": "billing-bot"},
        Facts(),
        ALLOW,
        (),
    ),
    (
        "billing-bot refunds: medium risk for a guided agent",
        {"action": "refund", "agent": "billing-bot", "amount": 20},
        Facts(),
        REQUIRE,
        (),
    ),
    (
        "a large payment",
        {"action": "send_payment", "agent": "pay-bot", "capabilities": ["payment"],
         "amount": 20000, "currency": "EUR"},
        Facts(),
        REQUIRE,
        ("large-transactions",),
    ),
    (
        "a payment without an amount",
        {"action": "invoice.pay", "agent": "billing-bot", "capabilities": ["payment"]},
        Facts(level=Level.AUTONOMOUS),
        REQUIRE,
        ("large-transactions",),
    ),
    (
        "a small payment by an autonomous agent",
        {"action": "invoice.pay", "agent": "billing-bot", "capabilities": ["payment"],
         "amount": 50},
        Facts(level=Level.AUTONOMOUS),
        ALLOW,
        (),
    ),
    (
        "a bulk write",
        {"action": "db.write_rows", "agent": "etl", "affected_records": 5000},
        Facts(level=Level.AUTONOMOUS),
        REQUIRE,
        ("bulk-operations",),
    ),
    (
        "a small write by an autonomous agent",
        {"action": "db.write_rows", "agent": "etl", "affected_records": 10},
        Facts(level=Level.AUTONOMOUS),
        ALLOW,
        (),
    ),
    (
        "IAM is human only",
        {"action": "iam.create_user", "agent": "ops-agent"},
        Facts(),
        SUGGEST,
        ("iam-is-human-only",),
    ),
    (
        "IAM deletes are human only too",
        {"action": "iam.delete_role", "agent": "helper", "environment": "production"},
        Facts(),
        SUGGEST,
        ("iam-is-human-only",),
    ),
    (
        "the allowlist removes the production baseline",
        {"action": "read_only_query", "agent": "ops-agent", "environment": "production"},
        Facts(),
        ALLOW,
        ("read-only-queries",),
    ),
    (
        "low confidence escalates the allowlist",
        {"action": "read_only_query", "agent": "analyst", "confidence": 0.4},
        Facts(),
        REQUIRE,
        (),
    ),
    (
        "a novel recipient escalates an allowed message",
        {"action": "send_newsletter", "agent": "mailer", "recipients": ["new@x.io"]},
        Facts(level=Level.AUTONOMOUS, novel_recipients=("new@x.io",)),
        REQUIRE,
        (),
    ),
    (
        "a known recipient is allowed for an autonomous agent",
        {"action": "send_newsletter", "agent": "mailer", "recipients": ["old@x.io"]},
        Facts(level=Level.AUTONOMOUS),
        ALLOW,
        (),
    ),
    (
        "a novel action escalates an allowed read",
        {"action": "search_tickets", "agent": "analyst", "environment": "staging"},
        Facts(novel=True),
        REQUIRE,
        (),
    ),
    (
        "max_level caps full_auto to autonomous",
        {"action": "deploy_production", "agent": "x"},
        Facts(level=Level.FULL_AUTO),
        REQUIRE,
        (),
    ),
    (
        "production baseline for a low-risk read",
        {"action": "search_docs", "agent": "analyst", "environment": "production"},
        Facts(),
        REQUIRE,
        (),
    ),
    (
        "a low-risk read in staging",
        {"action": "search_docs", "agent": "analyst", "environment": "staging"},
        Facts(),
        ALLOW,
        (),
    ),
    (
        "a supervised agent waits even for reads",
        {"action": "read_logs", "agent": "ops-agent", "environment": "staging"},
        Facts(),
        REQUIRE,
        (),
    ),
    (
        "three failures in a run escalate",
        {"action": "db.get_row", "agent": "etl"},
        Facts(failures=3),
        REQUIRE,
        (),
    ),
    (
        "an amount of the wrong type applies the payment rule",
        {"action": "invoice.pay", "agent": "billing-bot", "capabilities": ["payment"],
         "amount": "a lot"},
        Facts(level=Level.AUTONOMOUS),
        REQUIRE,
        ("large-transactions",),
    ),
]


@pytest.mark.parametrize(
    ("action", "facts", "decision", "rules"),
    [c[1:] for c in SPEC_CASES],
    ids=[c[0] for c in SPEC_CASES],
)
def test_spec_example(
    spec_policy: Policy,
    action: dict[str, Any],
    facts: Facts,
    decision: Decision,
    rules: tuple[str, ...],
) -> None:
    result = spec_policy.evaluate(action, facts)
    assert result.decision is decision, result.reasons
    assert sorted(result.rules) == sorted(rules)
    assert (result.requirements is not None) is (decision is REQUIRE)


def test_spec_example_production_gate(spec_policy: Policy) -> None:
    result = spec_policy.evaluate(
        {"action": "deploy", "agent": "ops-agent", "environment": "production"}
    )
    reqs = result.requirements
    assert reqs is not None and len(reqs.gates) == 1
    gate = reqs.gates[0]
    assert gate.source == "production-approval"
    assert gate.stages[0].approvers == ("tech-lead", "senior-engineer")
    assert gate.stages[0].quorum == 1
    assert gate.timeout == 4 * 3600
    assert gate.on_timeout.value == "escalate"
    assert gate.escalate_to == ("engineering-manager",)
    assert gate.confirm is True
    assert gate.approval_ttl == 300
    assert gate.guidance == "Check the rollback plan and the change window."
    assert result.risk is Risk.MEDIUM
    assert result.level is Level.SUPERVISED


def test_spec_example_payment_stages(spec_policy: Policy) -> None:
    result = spec_policy.evaluate(
        {"action": "send_payment", "capabilities": ["payment"], "amount": 12000}
    )
    reqs = result.requirements
    assert reqs is not None
    (gate,) = reqs.gates
    assert [(s.name, s.approvers, s.quorum) for s in gate.stages] == [
        ("tech-review", ("tech-lead",), 1),
        ("security-review", ("security-team",), 1),
    ]
    assert gate.stages[1].timeout == 8 * 3600
    assert gate.stages[1].on_timeout is not None and gate.stages[1].on_timeout.value == "deny"
    assert gate.parallel is False
    assert result.risk is Risk.HIGH


def test_spec_example_allowlist_is_fail_open(spec_policy: Policy) -> None:
    result = spec_policy.evaluate({"action": "read_only_query", "agent": "analyst"})
    assert result.decision is ALLOW
    assert result.fail_open is True
    assert spec_policy.evaluate({"action": "read_file"}).fail_open is False


def test_spec_example_escalation_uses_the_defaults_approvers(spec_policy: Policy) -> None:
    result = spec_policy.evaluate({"action": "read_file", "agent": "x", "confidence": 0.1})
    reqs = result.requirements
    assert reqs is not None
    assert [g.source for g in reqs.gates] == ["defaults"]
    assert reqs.gates[0].stages[0].approvers == ("on-call",)
    assert reqs.timeout == 30 * 60
    assert reqs.approval_ttl == 15 * 60


def test_evaluate_is_repeatable(spec_policy: Policy) -> None:
    action = {"action": "send_payment", "capabilities": ["payment"], "amount": "oops"}
    first = spec_policy.evaluate(action)
    for _ in range(3):
        assert spec_policy.evaluate(action) == first
    assert spec_policy.evaluate({"action": "read_x"}).errors == ()
