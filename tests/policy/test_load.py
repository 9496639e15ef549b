"""The policy loader: every error class at its exact `file:line:col`, all at once, no tracebacks."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from interlock.errors import Diagnostic, PolicyError
from interlock.policy import check_policy, load_policy, load_policy_text

FILE = "p.yaml"


def errors_of(text: str) -> list[Diagnostic]:
    """The diagnostics of text that must not load."""
    with pytest.raises(PolicyError) as info:
        load_policy_text(textwrap.dedent(text), FILE)
    assert info.value.diagnostics, "a PolicyError must carry at least one diagnostic"
    return info.value.diagnostics


def only_error(text: str) -> Diagnostic:
    diagnostics = errors_of(text)
    assert len(diagnostics) == 1, [str(d) for d in diagnostics]
    return diagnostics[0]


def at(d: Diagnostic) -> str:
    return f"{d.file}:{d.line}:{d.col}"


# --- YAML syntax ---------------------------------------------------------------------------


def test_yaml_syntax_error_points_at_the_bad_indentation() -> None:
    d = only_error(
        """\
        version: 1
        rules:
          - name: a
            decision: deny
           match: {}
        """
    )
    assert at(d) == "p.yaml:5:4"
    assert "YAML syntax" in d.message


def test_yaml_tab_is_a_syntax_error_at_its_line() -> None:
    d = only_error("version: 1\nrules:\n\t- name: a\n")
    assert at(d) == "p.yaml:3:1"
    assert "\\t" in d.message or "tab" in d.message.lower()


def test_yaml_duplicate_key_is_an_error() -> None:
    d = only_error(
        """\
        version: 1
        rules:
          - name: a
            decision: deny
            when: 'amount > 1'
            when: 'amount > 2'
        """
    )
    assert at(d) == "p.yaml:6:5"
    assert "duplicate key" in d.message and "when" in d.message


def test_unclosed_flow_list_is_a_syntax_error() -> None:
    d = only_error("version: 1\nrules:\n  - name: a\n    decision: [allow\n")
    assert d.file == FILE and d.line >= 4
    assert "YAML syntax" in d.message


# --- unknown keys, with a did-you-mean --------------------------------------------------------


def test_unknown_top_level_key_suggests_the_right_one() -> None:
    d = only_error("version: 1\nrulez: []\n")
    assert at(d) == "p.yaml:2:1"
    assert "unknown key `rulez`" in d.message
    assert "did you mean `rules`?" in d.message


def test_unknown_rule_key_suggests_the_right_one() -> None:
    d = only_error(
        """\
        version: 1
        rules:
          - name: a
            decision: deny
            gudiance: read the runbook
        """
    )
    assert at(d) == "p.yaml:5:5"
    assert "unknown key `gudiance`" in d.message
    assert "did you mean `guidance`?" in d.message


def test_misspelt_decision_key_is_unknown_and_decision_missing() -> None:
    diagnostics = errors_of(
        """\
        version: 1
        rules:
          - name: a
            decison: allow
        """
    )
    shown = [str(d) for d in diagnostics]
    assert any(s.startswith("p.yaml:4:5: unknown key `decison`") for s in shown), shown
    assert any("did you mean `decision`?" in s for s in shown), shown
    assert any("missing required key `decision`" in s for s in shown), shown


def test_unknown_stage_key_suggests_the_right_one() -> None:
    d = only_error(
        """\
        version: 1
        rules:
          - name: a
            decision: require_approval
            stages:
              - {name: s, approvers: [x], quorom: 1}
        """
    )
    assert at(d) == "p.yaml:6:35"
    assert "unknown key `quorom`" in d.message
    assert "did you mean `quorum`?" in d.message


def test_unknown_match_field_is_an_error() -> None:
    d = only_error(
        """\
        version: 1
        rules:
          - name: a
            match: {enviroment: production}
            decision: deny
        """
    )
    assert at(d) == "p.yaml:4:13"
    assert "`enviroment`" in d.message and "did you mean `environment`?" in d.message


# --- wrong types ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "where", "words"),
    [
        ("rules: {a: 1}\n", "p.yaml:2:8", "`rules` must be a list"),
        (
            "rules:\n  - name: a\n    decision: require_approval\n    quorum: two\n",
            "p.yaml:5:13",
            "`quorum` must be a whole number",
        ),
        (
            "rules:\n  - name: a\n    decision: deny\n    fail_open: 'yes'\n",
            "p.yaml:5:16",
            "`fail_open` must be true or false",
        ),
        ("defaults: [allow]\n", "p.yaml:2:11", "`defaults` must be a mapping"),
        (
            "escalation:\n  confidence_below: high\n",
            "p.yaml:3:21",
            "`confidence_below` must be a number",
        ),
        (
            "rules:\n  - name: a\n    match: {action: x, args.n: {gt: [1]}}\n    decision: deny\n",
            "p.yaml:4:32",
            "`gt` needs a number or a string",
        ),
        (
            "rules:\n  - name: a\n    when: 42\n    decision: deny\n",
            "p.yaml:4:11",
            "`when` must be a CEL expression string",
        ),
    ],
)
def test_wrong_type_names_the_key_at_its_value(body: str, where: str, words: str) -> None:
    d = only_error("version: 1\n" + body)
    assert at(d) == where, str(d)
    assert words in d.message


@pytest.mark.parametrize("match", ["true", "3", "[deploy]", "deploy"])
def test_match_that_is_not_a_mapping_is_an_error_beside_other_rules(match: str) -> None:
    """Found by test_properties: the shadowing check read such a `match` as keys and raised
    a TypeError; now it is the one error, at the value."""
    d = only_error(f"version: 1\nrules:\n  - name: a\n    match: {match}\n    decision: deny\n"
                   "  - name: b\n    match: {action: deploy}\n    decision: allow\n")
    assert at(d) == "p.yaml:4:12", str(d)
    assert "`match` must be a mapping" in d.message


def test_rule_that_is_not_a_mapping() -> None:
    d = only_error("version: 1\nrules:\n  - just a string\n")
    assert at(d) == "p.yaml:3:5"
    assert "a rule must be a mapping" in d.message


def test_policy_that_is_not_a_mapping() -> None:
    diagnostics = errors_of("[1, 2]\n")
    assert any("a policy must be a mapping" in d.message for d in diagnostics)
    assert all(at(d) == "p.yaml:1:1" for d in diagnostics)


# --- values -----------------------------------------------------------------------------------


def test_bad_decision_value() -> None:
    d = only_error("version: 1\nrules:\n  - name: a\n    decision: maybe\n")
    assert at(d) == "p.yaml:4:15"
    assert "`decision` must be one of allow, notify, require_approval, suggest, deny" in d.message
    assert "`maybe`" in d.message


def test_bad_environment_default_value() -> None:
    d = only_error("version: 1\nenvironments:\n  production: {default: block}\n")
    assert at(d) == "p.yaml:3:25"
    assert "`default` must be one of" in d.message


@pytest.mark.parametrize("value", ["30 minutes", "soon", "10", "5w", "-5m", "0s"])
def test_bad_duration(value: str) -> None:
    d = only_error(f"version: 1\ndefaults:\n  timeout: '{value}'\n")
    assert at(d) == "p.yaml:3:12"
    assert "`timeout` must be a duration like `45s`, `30m`, `4h` or `2d`" in d.message


def test_bad_duration_in_a_rule_and_a_stage() -> None:
    diagnostics = errors_of(
        """\
        version: 1
        rules:
          - name: a
            decision: require_approval
            approval_ttl: 5 mins
            stages:
              - name: s
                approvers: [x]
                timeout: forever
        """
    )
    assert [at(d) for d in diagnostics] == ["p.yaml:5:19", "p.yaml:9:18"]
    assert "`approval_ttl` must be a duration" in diagnostics[0].message
    assert "`timeout` must be a duration" in diagnostics[1].message


@pytest.mark.parametrize("good", ["45s", "5m", "4h", "2d", "1.5h"])
def test_good_durations_load(good: str) -> None:
    policy = load_policy_text(f"version: 1\ndefaults:\n  timeout: {good}\n", FILE)
    assert policy.defaults.timeout > 0


def test_bad_glob_in_match_action() -> None:
    d = only_error(
        'version: 1\nrules:\n  - name: a\n    match: {action: "deploy["}\n    decision: deny\n'
    )
    assert at(d) == "p.yaml:4:21"
    assert "`deploy[`" in d.message and "glob" in d.message


def test_bad_glob_in_risk_list_points_at_the_entry() -> None:
    d = only_error("version: 1\nrisk:\n  high: [ok_*, 'bad[']\n")
    assert at(d) == "p.yaml:3:16"
    assert "`bad[`" in d.message


def test_bad_glob_in_agent_scope() -> None:
    d = only_error("version: 1\nagents:\n  bot: {actions: ['[z-a]']}\n")
    assert d.line == 3 and d.col >= 18
    assert "`z-a`" in d.message or "`[z-a]`" in d.message


def test_bad_regex_backreference_is_rejected_by_re2() -> None:
    d = only_error(
        """\
        version: 1
        rules:
          - name: a
            match: {args.x: {regex: '(a)\\1'}}
            decision: deny
        """
    )
    assert at(d) == "p.yaml:4:21"
    assert "bad regex `(a)\\1`" in d.message


def test_bad_regex_unbalanced_paren() -> None:
    d = only_error(
        "version: 1\nrules:\n  - name: a\n    match:\n      agent: {regex: 'a(b'}\n"
        "    decision: deny\n"
    )
    assert at(d) == "p.yaml:5:14"
    assert "bad regex `a(b`" in d.message


def test_unknown_operator() -> None:
    d = only_error(
        "version: 1\nrules:\n  - name: a\n    match: {args.n: {foo: 1}}\n    decision: deny\n"
    )
    assert at(d) == "p.yaml:4:21"
    assert "unknown operator `foo`" in d.message


# --- CEL ----------------------------------------------------------------------------------


def test_cel_that_does_not_compile_points_inside_the_quoted_expression() -> None:
    text = 'version: 1\nrules:\n  - name: a\n    when: "amount > "\n    decision: deny\n'
    d = only_error(text)
    line = text.splitlines()[3]
    start, end = line.index('"') + 1, line.rindex('"') + 1  # 1-based columns of the quotes
    assert at(d) == "p.yaml:4:21"
    assert start < d.col <= end
    assert d.message.startswith("`when` is not valid CEL")


def test_cel_that_does_not_compile_points_at_the_bad_token_unquoted() -> None:
    d = only_error("version: 1\nrules:\n  - name: a\n    when: amount >> 3\n    decision: deny\n")
    # `    when: amount >> 3`: the extraneous second `>` is column 19.
    assert at(d) == "p.yaml:4:19"
    assert "not valid CEL" in d.message


def test_cel_error_on_the_second_line_of_a_block_scalar() -> None:
    text = (
        "version: 1\n"
        "rules:\n"
        "  - name: a\n"
        "    when: |\n"
        "      amount > 3 &&\n"
        "        nope >> 2\n"
        "    decision: deny\n"
    )
    d = only_error(text)
    # The expression's second line is file line 6; its extraneous `>` is column 15.
    assert at(d) == "p.yaml:6:15"


def test_cel_error_in_single_quotes_points_inside_the_expression() -> None:
    text = "version: 1\nrules:\n  - name: a\n    when: 'amount >'\n    decision: deny\n"
    d = only_error(text)
    assert d.line == 4 and d.col > 11


# --- on_timeout ---------------------------------------------------------------------------


def test_on_timeout_approve_on_a_non_low_risk_rule() -> None:
    d = only_error(
        """\
        version: 1
        rules:
          - name: a
            match: {action: deploy}
            decision: require_approval
            on_timeout: approve
        """
    )
    assert at(d) == "p.yaml:6:17"
    assert "`on_timeout: approve`" in d.message and "low risk" in d.message


def test_on_timeout_approve_on_a_rule_without_an_action_limit() -> None:
    d = only_error(
        """\
        version: 1
        risk: {low: ['read_*']}
        rules:
          - name: a
            match: {environment: staging}
            decision: require_approval
            on_timeout: approve
        """
    )
    assert at(d) == "p.yaml:7:17"


def test_on_timeout_approve_on_a_glob_that_overlaps_high_risk() -> None:
    d = only_error(
        """\
        version: 1
        risk:
          high: ['*.delete*']
          low: ['read_*', '*.get*']
        rules:
          - name: a
            match: {action: ['read_*', 'db.*']}
            decision: require_approval
            on_timeout: approve
        """
    )
    assert at(d) == "p.yaml:9:17"


def test_on_timeout_approve_in_a_stage_of_a_non_low_risk_rule() -> None:
    d = only_error(
        """\
        version: 1
        rules:
          - name: a
            match: {action: deploy}
            decision: require_approval
            stages:
              - {name: s, approvers: [x], on_timeout: approve}
        """
    )
    assert d.line == 7
    assert "`on_timeout: approve`" in d.message


def test_on_timeout_approve_accepted_when_every_action_is_low_risk() -> None:
    policy = load_policy_text(
        textwrap.dedent(
            """\
            version: 1
            risk:
              high: ['deploy_*']
              low: ['read_*', 'search_docs']
            rules:
              - name: reads-wait-a-little
                match: {action: ['read_*', 'search_docs']}
                decision: require_approval
                timeout: 5m
                on_timeout: approve
            """
        ),
        FILE,
    )
    gate = policy.evaluate({"action": "read_file"}).requirements
    assert gate is not None
    assert gate.gates[0].on_timeout.value == "approve"


def test_on_timeout_approve_in_defaults_is_an_error() -> None:
    d = only_error("version: 1\ndefaults:\n  on_timeout: approve\n")
    assert at(d) == "p.yaml:3:15"


def test_escalate_without_escalate_to() -> None:
    d = only_error(
        "version: 1\nrules:\n  - name: a\n    decision: require_approval\n"
        "    on_timeout: escalate\n"
    )
    assert at(d) == "p.yaml:5:17"
    assert "`escalate_to`" in d.message


def test_escalate_with_escalate_to_loads() -> None:
    policy = load_policy_text(
        "version: 1\nrules:\n  - name: a\n    decision: require_approval\n"
        "    on_timeout: escalate\n    escalate_to: [managers]\n",
        FILE,
    )
    reqs = policy.evaluate({"action": "x"}).requirements
    assert reqs is not None and reqs.gates[0].escalate_to == ("managers",)


# --- stages, names, version -----------------------------------------------------------------


def test_stage_without_approvers() -> None:
    d = only_error(
        """\
        version: 1
        rules:
          - name: a
            decision: require_approval
            stages:
              - {name: tech}
        """
    )
    assert at(d) == "p.yaml:6:9"
    assert "stage `tech` has no `approvers`" in d.message


def test_stage_with_an_empty_approver_list() -> None:
    d = only_error(
        "version: 1\nrules:\n  - name: a\n    decision: require_approval\n"
        "    stages:\n      - {name: tech, approvers: []}\n"
    )
    assert d.line == 6
    assert "`approvers`" in d.message


def test_duplicate_rule_names() -> None:
    d = only_error(
        """\
        version: 1
        rules:
          - name: a
            decision: deny
          - name: b
            decision: allow
          - name: a
            decision: allow
        """
    )
    assert at(d) == "p.yaml:7:11"
    assert "rule name `a` is used twice" in d.message


def test_missing_version() -> None:
    d = only_error("defaults: {decision: allow}\n")
    assert at(d) == "p.yaml:1:1"
    assert "missing required key `version`" in d.message


def test_wrong_version() -> None:
    d = only_error("version: 2\n")
    assert at(d) == "p.yaml:1:10"
    assert "`version` must be 1" in d.message


def test_empty_file_is_missing_its_version() -> None:
    d = only_error("")
    assert "`version`" in d.message


def test_rule_without_a_name() -> None:
    d = only_error("version: 1\nrules:\n  - decision: deny\n")
    assert at(d) == "p.yaml:3:5"
    assert "missing required key `name`" in d.message


def test_approval_keys_on_a_non_approval_rule() -> None:
    d = only_error(
        "version: 1\nrules:\n  - name: a\n    decision: deny\n    approvers: [ops]\n"
    )
    assert at(d) == "p.yaml:5:5"
    assert "`approvers` only applies to rules with `decision: require_approval`" in d.message


# --- all at once ------------------------------------------------------------------------------


FIVE_ERRORS = """\
version: 1
rulez: []
rules:
  - name: a
    decision: maybe
  - name: b
    decision: require_approval
    timeout: soon
  - name: c
    match: {args.x: {regex: '(a)\\1'}}
    decision: deny
  - name: c
    decision: deny
"""


def test_all_errors_of_a_file_are_reported_at_once() -> None:
    diagnostics = errors_of(FIVE_ERRORS)
    assert [at(d) for d in diagnostics] == [
        "p.yaml:2:1",
        "p.yaml:5:15",
        "p.yaml:8:14",
        "p.yaml:10:21",
        "p.yaml:12:11",
    ]
    messages = " | ".join(d.message for d in diagnostics)
    for words in ("`rulez`", "`maybe`", "`soon`", "(a)\\1", "used twice"):
        assert words in messages


def test_policy_error_message_lists_every_diagnostic_line() -> None:
    with pytest.raises(PolicyError) as info:
        load_policy_text(FIVE_ERRORS, FILE)
    lines = str(info.value).splitlines()
    assert len(lines) == 5
    assert all(line.startswith("p.yaml:") for line in lines)


def test_diagnostic_messages_start_lowercase_or_with_a_backtick() -> None:
    for d in errors_of(FIVE_ERRORS):
        first = d.message[0]
        assert first == "`" or first.islower() or not first.isalpha(), d.message


# --- warnings ---------------------------------------------------------------------------------


def test_unreachable_quorum_with_only_named_users_is_a_warning() -> None:
    policy = load_policy_text(
        textwrap.dedent(
            """\
            version: 1
            rules:
              - name: two-people
                decision: require_approval
                approvers: ['user:ann', 'user:bob']
                quorum: 3
            """
        ),
        FILE,
    )
    assert [str(w) for w in policy.warnings] == [
        "p.yaml:6:5: warning: quorum 3 can never be reached: stage `approval` names only "
        "2 reviewer(s)"
    ]


def test_unreachable_quorum_in_a_stage_is_a_warning() -> None:
    policy = load_policy_text(
        "version: 1\nrules:\n  - name: a\n    decision: require_approval\n    stages:\n"
        "      - {name: s, approvers: ['user:ann'], quorum: 2}\n",
        FILE,
    )
    assert len(policy.warnings) == 1
    w = policy.warnings[0]
    assert w.severity == "warning" and w.line == 6
    assert "quorum 2 can never be reached" in w.message


def test_quorum_with_a_group_is_not_warned() -> None:
    policy = load_policy_text(
        "version: 1\nrules:\n  - name: a\n    decision: require_approval\n"
        "    approvers: ['user:ann', ops]\n    quorum: 3\n",
        FILE,
    )
    assert policy.warnings == []


def test_reachable_quorum_is_not_warned() -> None:
    policy = load_policy_text(
        "version: 1\nrules:\n  - name: a\n    decision: require_approval\n"
        "    approvers: ['user:ann', 'user:bob']\n    quorum: 2\n",
        FILE,
    )
    assert policy.warnings == []


def test_shadowed_rule_is_a_warning() -> None:
    policy = load_policy_text(
        textwrap.dedent(
            """\
            version: 1
            rules:
              - name: no-deploys
                match: {action: deploy}
                decision: deny
              - name: production-deploys
                match: {action: deploy, environment: production}
                decision: require_approval
            """
        ),
        FILE,
    )
    assert len(policy.warnings) == 1
    w = policy.warnings[0]
    assert (w.line, w.col, w.severity) == (6, 5, "warning")
    assert "`production-deploys`" in w.message and "`no-deploys`" in w.message


def test_a_stricter_rule_with_a_condition_does_not_shadow() -> None:
    policy = load_policy_text(
        textwrap.dedent(
            """\
            version: 1
            rules:
              - name: big-deploys
                match: {action: deploy}
                when: "affected_records > 10"
                decision: deny
              - name: deploys
                match: {action: deploy}
                decision: require_approval
            """
        ),
        FILE,
    )
    assert policy.warnings == []


def test_spec_example_loads_without_warnings(spec_policy: object) -> None:
    assert spec_policy.warnings == []  # type: ignore[attr-defined]


# --- check_policy -----------------------------------------------------------------------------


def test_check_policy_returns_errors_and_warnings_in_file_order(tmp_path: Path) -> None:
    path = tmp_path / "interlock.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            version: 1
            rules:
              - name: pair
                decision: require_approval
                approvers: ['user:ann']
                quorum: 2
              - name: bad
                decision: sometimes
            """
        )
    )
    found = check_policy(path)
    assert [(d.severity, d.line) for d in found] == [("warning", 6), ("error", 8)]
    assert all(d.file == str(path) for d in found)


def test_check_policy_on_a_missing_file(tmp_path: Path) -> None:
    found = check_policy(tmp_path / "nope.yaml")
    assert len(found) == 1 and found[0].severity == "error"
    assert "no such file" in found[0].message


def test_check_policy_on_a_clean_file_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("version: 1\n")
    assert check_policy(path) == []


def test_load_policy_reports_the_path_it_was_given(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("version: 1\nrules: 3\n")
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert info.value.diagnostics[0].file == str(path)
    assert str(info.value).startswith(f"{path}:2:8: ")


@pytest.mark.parametrize(
    "text",
    [
        "version: 1\nrules: [[[]]]\n",
        "version: 1\nrules:\n  - {name: a, decision: deny, match: [1, 2]}\n",
        "version: 1\nrules:\n  - {name: a, decision: deny, match: {args.: 1}}\n",
        "version: 1\nrules:\n  - {name: a, decision: deny, match: {action: {}}}\n",
        "version: 1\nrules:\n  - {name: a, decision: deny, match: {action: []}}\n",
        "version: 1\nrules:\n  - {name: a, decision: deny, requires: [{x: 1}]}\n",
        "version: 1\nrules:\n  - {name: a, decision: require_approval, stages: [1, 2]}\n",
        "version: 1\nrules:\n  - {name: a, decision: require_approval, stages: {}}\n",
        "version: 1\nautonomy: {default: godlike, agents: {a: 7}}\n",
        "version: 1\nagents: {bot: [x]}\n",
        "version: 1\nagents: {bot: {}}\n",
        "version: 1\nenvironments: {production: allow}\n",
        "version: 1\n? [a, b]\n: 1\n",
        "version: 1\n1: 2\n",
        "version: 1\nredact: [args..x]\n",
        "version: 1\nrules:\n  - {name: a, decision: deny, when: '[1,2].map(x, x)'}\n",
        "version: !!binary aGVsbG8=\n",
        "version: 2001-13-45\n",
        "&a [*a]\n",
    ],
)
def test_malformed_documents_give_diagnostics_not_tracebacks(text: str) -> None:
    try:
        load_policy_text(text, FILE)
    except PolicyError as exc:
        assert exc.diagnostics
        for d in exc.diagnostics:
            assert d.file == FILE and d.line >= 1 and d.col >= 1 and d.message
            assert "Traceback" not in d.message


@pytest.mark.parametrize(
    ("text", "shadowed", "by"),
    [
        (
            "rules:\n  - {name: all, decision: deny}\n"
            "  - {name: x, match: {action: deploy}, decision: allow}\n",
            "x",
            "all",
        ),
        (
            "rules:\n  - {name: all, match: {action: '*'}, decision: suggest}\n"
            "  - {name: x, match: {action: 'db.*', environment: prod}, decision: notify}\n",
            "x",
            "all",
        ),
        (
            "rules:\n  - {name: x, match: {action: deploy}, decision: allow}\n"
            "  - {name: all, match: {action: [deploy, scale]}, decision: require_approval}\n",
            "x",
            "all",
        ),
    ],
)
def test_shadowing_is_found_wherever_the_stricter_rule_stands(
    text: str, shadowed: str, by: str
) -> None:
    policy = load_policy_text("version: 1\n" + text, FILE)
    assert len(policy.warnings) == 1
    message = policy.warnings[0].message
    assert f"rule `{shadowed}` is shadowed by the stricter rule `{by}`" in message


def test_equal_rules_do_not_warn() -> None:
    policy = load_policy_text(
        "version: 1\nrules:\n  - {name: x, match: {action: deploy}, decision: deny}\n"
        "  - {name: y, match: {action: deploy}, decision: deny}\n",
        FILE,
    )
    assert policy.warnings == []


def test_duplicate_stage_names() -> None:
    d = only_error(
        "version: 1\nrules:\n  - name: a\n    decision: require_approval\n    stages:\n"
        "      - {name: s, approvers: [x]}\n      - {name: s, approvers: [y]}\n"
    )
    assert at(d) == "p.yaml:7:16"
    assert "stage name `s` is used twice" in d.message
