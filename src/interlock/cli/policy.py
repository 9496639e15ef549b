"""`interlock policy check|explain|test`: work with a policy file without a server."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from interlock import jsonvalue
from interlock.errors import BadInput
from interlock.policy import Facts, check_policy, load_policy, read_policy_file
from interlock.policy.explain import explain_json, explain_text
from interlock.policy.records import Level
from interlock.policy.testing import load_cases, run_cases

app = typer.Typer(
    help="Check, explain and test a policy file.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

#: What the gateway takes in one request body; `explain` refuses anything larger.
MAX_BYTES = jsonvalue.MAX_BODY

PolicyFile = Annotated[Path, typer.Argument(help="The policy file (interlock.yaml).")]


def _json_option(value: str, option: str) -> Any:
    """JSON text, `@FILE`, or `-` for stdin, refused where the gateway would refuse it.

    The server answers a body over `max_body` bytes with 413, and JSON it would not store
    (NaN, a lone surrogate, nesting past its limit) with 422; `explain` says so instead of
    explaining an action no server would take. Every refusal is a BadParameter: one line
    naming the option."""
    text = _read_option(value, option)
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise typer.BadParameter(
            f"over {MAX_BYTES} bytes, the most the gateway accepts", param_hint=option)
    try:
        return jsonvalue.loads(text)
    except BadInput as exc:
        raise typer.BadParameter(exc.message, param_hint=option) from None


def _read_option(value: str, option: str) -> str:
    # One byte past the limit is enough to know it is over: a huge file is never read whole.
    try:
        if value == "-":
            return sys.stdin.read(MAX_BYTES + 1)
        if value.startswith("@"):
            with open(value[1:], "rb") as f:
                return f.read(MAX_BYTES + 1).decode("utf-8")
    except OSError as exc:
        raise typer.BadParameter(f"cannot read `{value[1:]}`: {exc.strerror}",
                                 param_hint=option) from None
    except UnicodeDecodeError as exc:
        where = "stdin" if value == "-" else f"`{value[1:]}`"
        raise typer.BadParameter(f"{where} is not UTF-8 text (byte {exc.start + 1})",
                                 param_hint=option) from None
    return value


@app.command()
def check(file: PolicyFile) -> None:
    """Report every error and warning of a policy file (exit 1 on any error)."""
    diagnostics = check_policy(file)
    errors = [d for d in diagnostics if d.severity == "error"]
    for d in diagnostics:
        print(str(d), file=sys.stderr if d.severity == "error" else sys.stdout)
    if errors:
        noun = "error" if len(errors) == 1 else "errors"
        print(f"{file}: {len(errors)} {noun}", file=sys.stderr)
        raise typer.Exit(1)
    policy = load_policy(file)
    print(f"{file}: ok ({len(policy.rules)} rules, policy hash {policy.hash[:12]})")


@app.command()
def explain(
    file: PolicyFile,
    action: Annotated[str, typer.Option(
        "--action", help="The action as JSON (or @FILE, or - for stdin).")],
    facts: Annotated[str | None, typer.Option(
        "--facts", help='What the store would know, as JSON: {"novel": true, "failures": 2, '
        '"novel_recipients": [...], "level": "guided"}.')] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print {decision, rules, reasons, risk} as JSON.")] = False,
) -> None:
    """Show the decision for one action, the rules that decided it and why."""
    body = _json_option(action, "--action")
    if not isinstance(body, dict):
        raise typer.BadParameter("the action must be a JSON object", param_hint="--action")
    known = _facts(_json_option(facts, "--facts")) if facts is not None else Facts()
    policy = load_policy(file)
    result = policy.evaluate(body, known)
    if as_json:
        print(json.dumps(explain_json(result), indent=2))
    else:
        print(explain_text(result))


@app.command("test")
def test_(
    file: PolicyFile,
    tests: Annotated[Path, typer.Argument(help="The tests file (a `tests:` list of cases).")],
) -> None:
    """Run policy test cases; print each failing case and exit 1 if any fails."""
    policy = load_policy(file)
    cases = load_cases(read_policy_file(tests), str(tests))
    results = run_cases(policy, cases)
    failed = [r for r in results if not r.passed]
    for r in failed:
        expected = r.case.decision.value
        if r.case.rules is not None:
            expected += f" by [{', '.join(r.case.rules)}]"
        actual = f"{r.result.decision.value} by [{', '.join(r.result.rules)}]"
        print(f"FAIL {tests}:{r.case.line}: {r.case.name}")
        print(f"  expected: {expected}")
        print(f"  actual:   {actual}")
        for reason in r.result.reasons:
            print(f"            - {reason}")
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if failed:
        raise typer.Exit(1)


def _facts(raw: Any) -> Facts:
    if not isinstance(raw, dict):
        raise typer.BadParameter("facts must be a JSON object", param_hint="--facts")
    try:
        level = raw.get("level")
        recipients = raw.get("novel_recipients", [])
        failures = raw.get("failures", 0)
        novel = raw.get("novel", False)
        if not isinstance(novel, bool) or not isinstance(failures, int) or not isinstance(
            recipients, list
        ):
            raise ValueError("novel must be true/false, failures a number, "
                             "novel_recipients a list")
        return Facts(
            novel=novel, failures=failures,
            novel_recipients=tuple(str(r) for r in recipients),
            level=None if level is None else Level(level),
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--facts") from None


__all__ = ["app"]
