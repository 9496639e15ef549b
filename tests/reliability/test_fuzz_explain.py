"""Fuzzing `interlock policy explain --action`: any input gets a decision or one clear line.

Random actions (right and wrong types), mangled JSON, oversized (10 MB), deeply nested and
non-Unicode input go through the real command in-process (`main`), whose stdout and stderr
are strict UTF-8 like a pipe's. A JSON object naming an action is explained (exit 0);
anything else exits non-zero with exactly one line on stderr, and never a traceback.
Once for real: the `interlock` entry point in a subprocess, fed from a file and stdin.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from interlock.cli import main
from interlock.policy import Decision, Risk

# A failing example is written as a patch with libcst, whose import warns; importing it
# quietly keeps a real failure a failure and not an INTERNALERROR under `-W error`.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    with contextlib.suppress(ImportError):
        import hypothesis.extra._patching  # noqa: F401

SPEC_EXAMPLE = Path(__file__).parents[1] / "policy" / "spec_example.yaml"
INTERLOCK = [sys.executable, "-c", "from interlock.cli import entrypoint; entrypoint()"]
FUZZ = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
#: What the gateway accepts (ServerSettings): bytes in a body, levels of nesting.
MAX_BYTES = 1024 * 1024
MAX_DEPTH = 32
TEN_MB = 10 * 1024 * 1024

DECISIONS = {d.value for d in Decision}
RISKS = {r.value for r in Risk}

# --- running the command -------------------------------------------------------------------------


def explain(*args: str, stdin: str = "") -> tuple[int, str, str]:
    """`interlock policy explain SPEC_EXAMPLE ARGS…`: exit code, stdout, stderr.

    Output goes through strict UTF-8 streams, as to a terminal or a pipe: text a real
    stream cannot carry fails here too, instead of hiding in a StringIO."""
    out, err = io.BytesIO(), io.BytesIO()
    out_text = io.TextIOWrapper(out, encoding="utf-8", errors="strict", write_through=True)
    err_text = io.TextIOWrapper(err, encoding="utf-8", errors="strict", write_through=True)
    with contextlib.redirect_stdout(out_text), contextlib.redirect_stderr(err_text), \
            mock.patch("sys.stdin", io.StringIO(stdin)):
        code = main(["policy", "explain", str(SPEC_EXAMPLE), *args])
    return code, out.getvalue().decode(), err.getvalue().decode()


def assert_decided(code: int, out: str, err: str, *, as_json: bool) -> None:
    assert code == 0, err
    assert err == ""
    if as_json:
        data = json.loads(out)
        assert data["decision"] in DECISIONS and data["risk"] in RISKS
        assert all(isinstance(r, str) for r in data["rules"])
        assert data["reasons"] and all(isinstance(r, str) for r in data["reasons"])
    else:
        first = out.splitlines()[0]
        assert first.startswith("decision: ") and first.split()[1] in DECISIONS, out


def assert_one_line(code: int, out: str, err: str, *, codes: tuple[int, ...] = (1, 2)) -> str:
    """A refusal: a non-zero exit, nothing on stdout, one `interlock…` line on stderr."""
    assert code in codes, (code, out, err)
    assert "Traceback" not in out + err
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("interlock"), err
    return lines[0]


# --- strategies ----------------------------------------------------------------------------------

NAMES = ["deploy", "scale", "send_payment", "read_file", "iam.create_user", "read_only_query",
         "db.delete_rows", "run_command", "refund"]
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                  max_size=4),
    max_leaves=12,
)
#: An action as an agent might send it: the fields the policy reads, each either of the
#: right type and from the policy's vocabulary, or anything at all.
actions = st.fixed_dictionaries(
    {},
    optional={
        "action": st.one_of(st.sampled_from(NAMES), st.text(max_size=16), json_values),
        "agent": st.one_of(st.sampled_from(["ops-agent", "billing-bot", "helper"]), json_values),
        "environment": st.one_of(st.sampled_from(["production", "staging"]), json_values),
        "capabilities": st.one_of(
            st.lists(st.sampled_from(["payment", "email", "destructive"]), max_size=3),
            json_values),
        "amount": st.one_of(st.integers(0, 20_000),
                            st.floats(allow_nan=False, allow_infinity=False), json_values),
        "affected_records": st.one_of(st.integers(0, 5000), json_values),
        "confidence": st.one_of(st.floats(0, 1), json_values),
        "risk": st.one_of(st.sampled_from([r.value for r in Risk]), json_values),
        "recipients": st.one_of(st.lists(st.emails(), max_size=3), json_values),
        "args": st.one_of(st.dictionaries(st.text(max_size=8), json_values, max_size=4),
                          json_values),
        "context": json_values,
    },
).flatmap(lambda known: st.dictionaries(st.text(max_size=8), json_values, max_size=3).map(
    lambda extra: {**extra, **known}))


def nested(depth: int, kind: str) -> Any:
    """`depth` levels of lists or objects (1: `[]` or `{}`)."""
    value: Any = [] if kind == "list" else {}
    for _ in range(depth - 1):
        value = [value] if kind == "list" else {"a": value}
    return value


def strict_json(value: Any) -> bool:
    """Whether JSON that Python parsed is JSON everywhere: no NaN or infinities, no text
    that is not Unicode (a lone surrogate from a cut `\\ud83d\\ude00` pair)."""
    try:
        json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (ValueError, UnicodeEncodeError):
        return False
    return True


def names_an_action(action: Any) -> bool:
    return isinstance(action, dict) and isinstance(action.get("action"), str) and bool(
        action["action"])


# --- properties ----------------------------------------------------------------------------------


@FUZZ
@given(action=actions, as_json=st.booleans(), ascii_only=st.booleans())
@example(action={"action": "deploy", "environment": "production", "agent": "ops-agent"},
         as_json=False, ascii_only=True)
@example(action={"action": "send_payment", "capabilities": ["payment"], "amount": "lots"},
         as_json=True, ascii_only=True)
@example(action={"action": "é\u2028\n", "agent": "billing-bot"}, as_json=False,
         ascii_only=False)
def test_any_action_object_is_explained_or_refused_in_one_line(
    action: dict[str, Any], as_json: bool, ascii_only: bool
) -> None:
    text = json.dumps(action, ensure_ascii=ascii_only)
    code, out, err = explain("--action", text, *(["--json"] if as_json else []))
    if names_an_action(action):
        assert_decided(code, out, err, as_json=as_json)
    else:
        line = assert_one_line(code, out, err, codes=(1,))
        assert "`action`" in line


@FUZZ
@given(data=st.data(), action=actions)
def test_mangled_json_is_refused_in_one_line_saying_where(data: st.DataObject,
                                                          action: dict[str, Any]) -> None:
    text = json.dumps(action)
    cut = data.draw(st.integers(0, len(text)), label="cut")
    mangle = data.draw(st.sampled_from(["truncate", "insert", "delete", "replace"]),
                       label="mangle")
    junk = data.draw(st.text(min_size=1, max_size=3), label="junk")
    mangled = {
        "truncate": text[:cut],
        "insert": text[:cut] + junk + text[cut:],
        "delete": text[:cut] + text[cut + 1:],
        "replace": text[:cut] + junk + text[cut + len(junk):],
    }[mangle]
    code, out, err = explain("--action", mangled, "--json")
    try:
        parsed = json.loads(mangled)
    except ValueError:
        line = assert_one_line(code, out, err, codes=(2,))
        assert "--action" in line and "not valid JSON" in line and " at line " in line, line
        return
    if not strict_json(parsed):
        assert_one_line(code, out, err, codes=(2,))
    elif names_an_action(parsed):
        assert_decided(code, out, err, as_json=True)
    else:
        assert_one_line(code, out, err)


@FUZZ
@given(text=st.text(max_size=40))
@example(text="")
@example(text="\ufeff{}")
@example(text="null")
def test_any_text_at_all(text: str) -> None:
    code, out, err = explain("--action", text)
    if code == 0:
        assert_decided(code, out, err, as_json=False)
    else:
        assert_one_line(code, out, err)


@settings(max_examples=25, deadline=None)
@given(depth=st.integers(MAX_DEPTH + 1, 3000), kind=st.sampled_from(["list", "dict"]),
       inside=st.booleans())
@example(depth=MAX_DEPTH + 1, kind="dict", inside=False)
@example(depth=100_000, kind="list", inside=True)
def test_nesting_deeper_than_the_gateway_takes_is_refused(depth: int, kind: str,
                                                          inside: bool) -> None:
    # The action itself is level 1, so `args` may nest MAX_DEPTH - 1 levels.
    if inside:
        text = json.dumps({"action": "deploy", "args": {"x": nested(depth - 2, kind)}}) if (
            depth < 900) else ('{"action": "deploy", "args": ' + "[" * (depth - 1)
                               + "]" * (depth - 1) + "}")
    else:
        text = json.dumps({"action": "deploy", "context": nested(depth - 1, kind)}) if (
            depth < 900) else '{"action": "deploy", "x": ' + "[" * depth + "]" * depth + "}"
    code, out, err = explain("--action", text)
    line = assert_one_line(code, out, err, codes=(2,))
    assert f"nested deeper than {MAX_DEPTH} levels" in line and "--action" in line


@settings(max_examples=10, deadline=None)
@given(depth=st.integers(1, MAX_DEPTH - 1), kind=st.sampled_from(["list", "dict"]))
def test_nesting_the_gateway_takes_is_explained(depth: int, kind: str) -> None:
    text = json.dumps({"action": "deploy", "args": nested(depth, kind)})
    assert_decided(*explain("--action", text, "--json"), as_json=True)


def test_ten_megabytes_of_args_are_refused_from_argv_and_stdin() -> None:
    big = json.dumps({"action": "deploy", "args": {"blob": "x" * TEN_MB}})
    for args, stdin in ((["--action", big], ""), (["--action", "-"], big)):
        code, out, err = explain(*args, stdin=stdin)
        line = assert_one_line(code, out, err, codes=(2,))
        assert f"over {MAX_BYTES} bytes" in line and "--action" in line


def test_just_under_the_size_limit_is_explained() -> None:
    shell = json.dumps({"action": "deploy", "args": {"blob": ""}})
    fits = json.dumps({"action": "deploy", "args": {"blob": "x" * (MAX_BYTES - len(shell))}})
    assert len(fits.encode()) == MAX_BYTES
    assert_decided(*explain("--action", fits), as_json=False)
    over = fits.replace('"x', '"xx', 1)
    assert_one_line(*explain("--action", over), codes=(2,))


STRICT = {
    "nan": ('{"action": "deploy", "confidence": NaN}', "`NaN` is not a JSON number"),
    "infinity": ('{"action": "deploy", "amount": -Infinity}', "`-Infinity` is not a JSON number"),
    "5000-digits": ('{"action": "deploy", "amount": ' + "9" * 5000 + "}",
                    "a number of 5000 digits"),
    # Text mode, where the scope reason repeats the action's name back.
    "surrogate-name": ('{"action": "x\\ud800", "agent": "billing-bot"}',
                       "`$.action` holds a lone surrogate `\\ud800`"),
    "surrogate-value": ('{"action": "deploy", "args": {"a b": ["\\udfff"]}}',
                        '`$.args["a b"][0]`'),
    "surrogate-key": ('{"action": "deploy", "args": {"\\udc80": 1}}', "a key in `$.args`"),
    # What argv holds for bytes that are not UTF-8 (surrogateescape).
    "argv-bytes": ('{"action": "deploy", "agent": "\udcff"}', "lone surrogate `\\udcff`"),
    "cut-short": ('{"action": "deploy"', "Expecting ',' delimiter at line 1 column 20"),
    "two-values": ('{"action": "deploy"}\n{"action": "scale"}', "Extra data at line 2 column 1"),
    "missing-file": ("@/nonexistent/action.json", "cannot read `/nonexistent/action.json`"),
}


@pytest.mark.parametrize(("text", "said"), list(STRICT.values()), ids=list(STRICT))
def test_input_that_is_not_json_everywhere_is_refused(text: str, said: str) -> None:
    line = assert_one_line(*explain("--action", text), codes=(2,))
    assert said in line and "--action" in line, line


@pytest.mark.parametrize(
    ("text", "said"),
    [("[1, 2]", "must be a JSON object"), ('"deploy"', "must be a JSON object"),
     ("{}", "`action`"), ('{"action": ""}', "`action`"), ('{"action": 7}', "`action`")],
)
def test_json_that_is_no_action_is_refused(text: str, said: str) -> None:
    line = assert_one_line(*explain("--action", text))
    assert said in line


@FUZZ
@given(facts=json_values)
@example(facts={"novel": True, "failures": 2, "level": "supervised"})
@example(facts={"level": "boss"})
def test_any_facts_are_used_or_refused_in_one_line(facts: Any) -> None:
    code, out, err = explain("--action", '{"action": "read_file"}', "--facts", json.dumps(facts))
    if code == 0:
        assert_decided(code, out, err, as_json=False)
    else:
        line = assert_one_line(code, out, err, codes=(2,))
        assert "--facts" in line


def test_files_that_are_not_utf8_or_missing_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(b'{"action": "deploy\xff"}')
    line = assert_one_line(*explain("--action", f"@{bad}"), codes=(2,))
    assert f"`{bad}` is not UTF-8 text (byte 19)" in line
    line = assert_one_line(*explain("--action", f"@{tmp_path}"), codes=(2,))
    assert f"cannot read `{tmp_path}`" in line


def test_the_real_command_refuses_in_one_line(tmp_path: Path) -> None:
    """The console entry point, as a shell runs it: a 10 MB file, deep nesting on stdin."""
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"action": "deploy", "args": {"blob": "x" * TEN_MB}}))
    deep = '{"action": "deploy", "args": ' + "[" * 50_000 + "]" * 50_000 + "}"
    base = [*INTERLOCK, "policy", "explain", str(SPEC_EXAMPLE)]
    for args, stdin, said in [
        (["--action", f"@{big}"], "", f"over {MAX_BYTES} bytes"),
        (["--action", "-"], deep, f"nested deeper than {MAX_DEPTH} levels"),
    ]:
        done = subprocess.run([*base, *args], input=stdin, capture_output=True, text=True,
                              timeout=60)
        line = assert_one_line(done.returncode, done.stdout, done.stderr, codes=(2,))
        assert said in line, line
