"""Policy test files (`interlock policy test`): cases of action, facts and expected decision."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from interlock.errors import PolicyError
from interlock.policy.engine import Policy
from interlock.policy.records import Decision, Facts, Level, PolicyResult
from interlock.policy.source import Path, parse_yaml, plain

CASE_KEYS = ("name", "action", "expect", "facts")
FACT_KEYS = ("novel", "novel_recipients", "failures", "level")


@dataclass(frozen=True, kw_only=True)
class Case:
    """One test case."""

    name: str
    line: int
    action: dict[str, Any]
    decision: Decision
    rules: tuple[str, ...] | None
    """Expected deciding rules (None: not checked)."""
    facts: Facts


@dataclass(frozen=True, kw_only=True)
class CaseResult:
    """The outcome of one case."""

    case: Case
    result: PolicyResult
    passed: bool


def load_cases(text: str, file: str) -> list[Case]:
    """Parse a tests file; raises PolicyError with every problem at once."""
    src = parse_yaml(text, file)
    if not src.ok:
        raise PolicyError(src.diagnostics)
    data = src.data
    raw = data.get("tests") if isinstance(data, dict) else None
    if not isinstance(data, dict) or not isinstance(raw, list):
        src.error((), "a tests file must be a mapping with a `tests:` list of cases")
        raise PolicyError(src.diagnostics)
    for key in data:
        if key != "tests":
            src.error((key,), f"unknown key `{key}` (expected `tests`)", key=True)
    cases: list[Case] = []
    for i, item in enumerate(raw):
        where: Path = ("tests", i)
        if not isinstance(item, dict):
            src.error(where, "a test case must be a mapping with `name`, `action`, `expect`")
            continue
        for key in item:
            if key not in CASE_KEYS:
                src.error((*where, key), f"unknown key `{key}` (expected one of: "
                          f"{', '.join(CASE_KEYS)})", key=True)
        name = item.get("name")
        if not isinstance(name, str) or not name:
            src.error(where, "a test case needs a `name`")
            name = f"case {i + 1}"
        action = item.get("action")
        if not isinstance(action, dict) or not isinstance(action.get("action"), str):
            src.error((*where, "action") if "action" in item else where,
                      "`action` must be a mapping with at least `action: NAME`")
            continue
        expect = item.get("expect")
        decision, rules = _expectation(expect)
        if decision is None:
            src.error((*where, "expect") if "expect" in item else where,
                      "`expect` must be a decision (allow, notify, require_approval, suggest, "
                      "deny) or `{decision: ..., rules: [...]}`")
            continue
        facts = _facts(item.get("facts"), src, (*where, "facts"))
        cases.append(Case(
            name=name, line=src.position(where)[0], action=plain(action), decision=decision,
            rules=rules, facts=facts,
        ))
    if not src.ok:
        raise PolicyError(src.diagnostics)
    return cases


def run_cases(policy: Policy, cases: list[Case]) -> list[CaseResult]:
    """Evaluate every case against the policy."""
    out: list[CaseResult] = []
    for case in cases:
        result = policy.evaluate(case.action, case.facts)
        passed = result.decision is case.decision and (
            case.rules is None or sorted(result.rules) == sorted(case.rules)
        )
        out.append(CaseResult(case=case, result=result, passed=passed))
    return out


def _expectation(expect: Any) -> tuple[Decision | None, tuple[str, ...] | None]:
    choices = {d.value: d for d in Decision}
    if isinstance(expect, str):
        return choices.get(expect), None
    if isinstance(expect, dict) and isinstance(expect.get("decision"), str):
        rules = expect.get("rules")
        if rules is not None and not (
            isinstance(rules, list) and all(isinstance(r, str) for r in rules)
        ):
            return None, None
        if set(expect) - {"decision", "rules"}:
            return None, None
        return choices.get(expect["decision"]), None if rules is None else tuple(rules)
    return None, None


def _facts(raw: Any, src: Any, where: Path) -> Facts:
    if raw is None:
        return Facts()
    if not isinstance(raw, dict):
        src.error(where, "`facts` must be a mapping")
        return Facts()
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in FACT_KEYS:
            src.error((*where, key), f"unknown fact `{key}` (expected one of: "
                      f"{', '.join(FACT_KEYS)})", key=True)
        elif key == "novel" and isinstance(value, bool):
            kwargs["novel"] = value
        elif key == "failures" and isinstance(value, int) and not isinstance(value, bool) \
                and value >= 0:
            kwargs["failures"] = int(value)
        elif key == "novel_recipients" and isinstance(value, list) and all(
            isinstance(v, str) for v in value
        ):
            kwargs["novel_recipients"] = tuple(value)
        elif key == "level" and value in {lv.value for lv in Level}:
            kwargs["level"] = Level(value)
        else:
            src.error((*where, key), f"fact `{key}` has the wrong type or value")
    return Facts(**kwargs)
