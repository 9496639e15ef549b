"""`interlock policy check|explain|test` and `interlock --help`, in-process and once for real."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import typer

from interlock.cli import app, main

SPEC_EXAMPLE = Path(__file__).parent.parent / "policy" / "spec_example.yaml"

BAD_POLICY = """\
version: 1
rulez: []
rules:
  - name: a
    decision: maybe
  - name: b
    decision: require_approval
    timeout: soon
  - name: b
    decision: deny
"""

DEPLOY = {"action": "deploy", "agent": "ops-agent", "environment": "production"}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# --- check ---------------------------------------------------------------------------------------


def test_check_ok(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "policy", "check", str(SPEC_EXAMPLE))
    assert code == 0
    assert "ok" in out
    assert err == ""


def test_check_reports_every_error_with_its_position(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write(tmp_path, "interlock.yaml", BAD_POLICY)
    code, out, err = run(capsys, "policy", "check", str(path))
    assert code == 1
    positioned = [
        line for line in err.splitlines()
        if line.startswith(f"{path}:") and line.split(":")[1].isdigit()
    ]
    assert [":".join(line.split(":")[1:3]) for line in positioned] == [
        "2:1", "5:15", "8:14", "9:11",
    ]
    assert "did you mean `rules`?" in positioned[0]
    assert "Traceback" not in out + err


def test_check_prints_warnings_and_still_passes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        "warn.yaml",
        """\
        version: 1
        rules:
          - name: pair
            decision: require_approval
            approvers: ['user:ann']
            quorum: 2
        """,
    )
    code, out, err = run(capsys, "policy", "check", str(path))
    assert code == 0
    assert f"{path}:6:5: warning: quorum 2 can never be reached" in out + err


@pytest.mark.parametrize(
    "text",
    ["version: 1\nrules: [\n", "\x00\x01binary", "- just\n- a list\n", "version: 1\n\t- x\n"],
)
def test_check_never_shows_a_traceback(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str
) -> None:
    path = tmp_path / "odd.yaml"
    path.write_text(text, encoding="utf-8")
    code, out, err = run(capsys, "policy", "check", str(path))
    assert code == 1
    assert "Traceback" not in out + err
    assert any(line.startswith(f"{path}:") for line in err.splitlines())


def test_check_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, "policy", "check", str(tmp_path / "nope.yaml"))
    assert code != 0
    assert "Traceback" not in out + err
    assert "nope.yaml" in err


def test_check_needs_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "policy", "check")
    assert code == 2
    assert len(err.strip().splitlines()) == 1


# --- explain -------------------------------------------------------------------------------------


def test_explain_text(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys, "policy", "explain", str(SPEC_EXAMPLE), "--action", json.dumps(DEPLOY)
    )
    assert code == 0, err
    assert "require_approval" in out
    assert "production-approval" in out
    assert "rule production-approval" in out
    assert "medium" in out


def test_explain_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys, "policy", "explain", str(SPEC_EXAMPLE), "--action", json.dumps(DEPLOY), "--json"
    )
    assert code == 0, err
    data = json.loads(out)
    assert {"decision", "rules", "reasons", "risk"} <= set(data)
    assert data["decision"] == "require_approval"
    assert data["rules"] == ["production-approval"]
    assert data["reasons"] == ["rule production-approval"]
    assert data["risk"] == "medium"


def test_explain_json_baseline_and_escalation(capsys: pytest.CaptureFixture[str]) -> None:
    action = {"action": "restart_service", "agent": "helper"}
    _, out, _ = run(
        capsys, "policy", "explain", str(SPEC_EXAMPLE), "--action", json.dumps(action), "--json"
    )
    data = json.loads(out)
    assert data["reasons"] == ["baseline: guided agent, medium risk"]
    assert data["rules"] == []
    unsure = {"action": "read_file", "agent": "helper", "confidence": 0.55}
    _, out, _ = run(
        capsys, "policy", "explain", str(SPEC_EXAMPLE), "--action", json.dumps(unsure), "--json"
    )
    data = json.loads(out)
    assert data["decision"] == "require_approval"
    assert "confidence 0.55 < 0.7" in data["reasons"]
    assert data["risk"] == "low"


def test_explain_with_facts(capsys: pytest.CaptureFixture[str]) -> None:
    action = {"action": "read_file", "agent": "helper"}
    _, out, _ = run(
        capsys, "policy", "explain", str(SPEC_EXAMPLE), "--action", json.dumps(action),
        "--facts", json.dumps({"novel": True}), "--json",
    )
    assert json.loads(out)["decision"] == "require_approval"


def test_explain_action_from_a_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "action.json"
    path.write_text(json.dumps({"action": "iam.create_user"}))
    code, out, _ = run(
        capsys, "policy", "explain", str(SPEC_EXAMPLE), "--action", f"@{path}", "--json"
    )
    assert code == 0
    assert json.loads(out)["decision"] == "suggest"


@pytest.mark.parametrize("bad", ['{"action":', "not json", "{'action': 'x'}", ""])
def test_explain_bad_json_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], bad: str
) -> None:
    code, out, err = run(capsys, "policy", "explain", str(SPEC_EXAMPLE), "--action", bad)
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "JSON" in err
    assert "Traceback" not in out + err


def test_explain_json_that_is_not_an_object(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "policy", "explain", str(SPEC_EXAMPLE), "--action", "[1, 2]")
    assert code == 2
    assert len(err.strip().splitlines()) == 1


def test_explain_action_without_a_name(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "policy", "explain", str(SPEC_EXAMPLE), "--action", "{}")
    assert code != 0
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in out + err


def test_explain_unknown_flag_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(
        capsys, "policy", "explain", str(SPEC_EXAMPLE), "--action", "{}", "--bogus"
    )
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "--bogus" in err


def test_explain_without_action_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "policy", "explain", str(SPEC_EXAMPLE))
    assert code == 2
    assert "--action" in err


def test_explain_with_a_broken_policy(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", BAD_POLICY)
    code, out, err = run(
        capsys, "policy", "explain", str(path), "--action", json.dumps(DEPLOY)
    )
    assert code == 1
    assert f"{path}:2:1:" in err
    assert "Traceback" not in out + err


# --- test ----------------------------------------------------------------------------------------

PASSING_CASES = """\
tests:
  - name: production deploys wait for a tech lead
    action: {action: deploy, agent: ops-agent, environment: production}
    expect: require_approval
  - name: IAM is suggest-only
    action: {action: iam.create_user}
    expect: {decision: suggest, rules: [iam-is-human-only]}
  - name: a novel read waits
    action: {action: read_file, agent: helper}
    facts: {novel: true, failures: 0}
    expect: require_approval
  - name: a known read runs
    action: {action: read_file, agent: helper}
    facts: {novel: false, failures: 0}
    expect: allow
"""

FAILING_CASES = """\
tests:
  - name: reads are fine
    action: {action: read_file, agent: helper}
    expect: allow
  - name: wrongly expects production deploys to run
    action: {action: deploy, agent: ops-agent, environment: production}
    expect: allow
  - name: wrongly names the rule
    action: {action: iam.create_user}
    expect: {decision: suggest, rules: [production-approval]}
"""


def test_policy_test_passes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    tests = write(tmp_path, "tests.yaml", PASSING_CASES)
    code, out, err = run(capsys, "policy", "test", str(SPEC_EXAMPLE), str(tests))
    assert code == 0, out + err
    assert "4 passed, 0 failed" in out


def test_policy_test_failing_cases_print_expected_and_actual(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    tests = write(tmp_path, "tests.yaml", FAILING_CASES)
    code, out, err = run(capsys, "policy", "test", str(SPEC_EXAMPLE), str(tests))
    assert code == 1
    text = out + err
    assert "wrongly expects production deploys to run" in text
    assert "wrongly names the rule" in text
    assert "reads are fine" not in text.split("passed")[0].replace("1 passed", "")
    assert text.count("expected:") == 2
    assert text.count("actual:") == 2
    lines = text.splitlines()
    deploy = lines.index(next(x for x in lines if "wrongly expects production" in x))
    block = "\n".join(lines[deploy : deploy + 4])
    assert "expected: allow" in block
    assert "require_approval" in block and "production-approval" in block
    assert "1 passed, 2 failed" in text


def test_policy_test_with_a_broken_tests_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    tests = write(
        tmp_path,
        "tests.yaml",
        """\
        tests:
          - name: no expectation
            action: {action: deploy}
          - name: bad decision
            action: {action: deploy}
            expect: perhaps
        """,
    )
    code, out, err = run(capsys, "policy", "test", str(SPEC_EXAMPLE), str(tests))
    assert code == 1
    positioned = [x for x in err.splitlines() if x.startswith(f"{tests}:")]
    assert len(positioned) == 2
    assert "Traceback" not in out + err


def test_policy_test_needs_two_files(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "policy", "test", str(SPEC_EXAMPLE))
    assert code == 2
    assert len(err.strip().splitlines()) == 1


# --- help ----------------------------------------------------------------------------------------


def _commands(group: typer.Typer) -> dict[str, str]:
    command = typer.main.get_command(group)
    assert hasattr(command, "commands")
    return {
        name: (cmd.get_short_help_str(limit=300) or "")
        for name, cmd in command.commands.items()  # type: ignore[attr-defined]
    }


def test_help_lists_every_command_with_a_one_line_purpose(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    commands = _commands(app)
    assert "policy" in commands
    listed = {}
    for line in out.splitlines():
        words = line.split(None, 1)
        if len(words) == 2 and words[0] in commands and line.startswith("  "):
            listed[words[0]] = words[1]
    assert set(listed) == set(commands)
    for name, purpose in listed.items():
        assert purpose.strip(), name
        assert commands[name], f"`{name}` has no help text"


def test_policy_help_lists_check_explain_test(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "policy", "--help")
    assert code == 0
    for name in ("check", "explain", "test"):
        assert any(line.split()[:1] == [name] and len(line.split()) > 1
                   for line in out.splitlines()), name


@pytest.mark.parametrize("sub", ["check", "explain", "test"])
def test_every_policy_command_has_help(capsys: pytest.CaptureFixture[str], sub: str) -> None:
    code, out, _ = run(capsys, "policy", sub, "--help")
    assert code == 0
    assert "Usage:" in out


def test_no_arguments_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys)
    assert code == 0
    assert "policy" in out


def test_unknown_command_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "frobnicate")
    assert code == 2
    assert len(err.strip().splitlines()) == 1


# --- the real console script ------------------------------------------------------------------


def _console_script() -> str:
    beside = Path(sys.executable).parent / "interlock"
    if beside.exists():
        return str(beside)
    found = shutil.which("interlock")
    assert found, "the `interlock` console script is not installed"
    return found


def test_console_script_runs_policy_check(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    ok = subprocess.run(
        [_console_script(), "policy", "check", str(SPEC_EXAMPLE)],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert "ok" in ok.stdout
    bad = write(tmp_path, "bad.yaml", BAD_POLICY)
    failed = subprocess.run(
        [_console_script(), "policy", "check", str(bad)],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )
    assert failed.returncode == 1
    assert f"{bad}:5:15:" in failed.stderr
    assert "Traceback" not in failed.stderr


def test_starter_policy_passes_its_own_tests(capsys: pytest.CaptureFixture[str]) -> None:
    root = Path(__file__).parent.parent.parent
    starter = root / "src" / "interlock" / "policy" / "starter.yaml"
    tests = root / "tests" / "policies" / "starter_tests.yaml"
    code, out, err = run(capsys, "policy", "test", str(starter), str(tests))
    assert code == 0, out + err
    assert " 0 failed" in out
