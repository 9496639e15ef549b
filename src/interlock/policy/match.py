"""`match` conditions compiled to predicates over an action.

A condition is a field path and a matcher; a literal string with glob characters is a
glob, a list is any-of, a mapping is operators that must all hold. For a list-valued field
a matcher holds when any element matches; a field the action lacks never matches, except
under `exists: false`.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import re2

OPERATORS = ("gt", "gte", "lt", "lte", "eq", "ne", "in", "not_in", "regex", "exists")
GLOB_CHARS = frozenset("*?[")

#: Matches one value (never a list: list-valued fields are spread by the caller).
ValueTest = Callable[[Any], bool]

_MISSING = object()
_BRACKET_RE = re.compile(r"\[([^\]]*)\]")
_RANGE_RE = re.compile(r"(.)-(.)")
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False


class MatchSpecError(ValueError):
    """A matcher the loader must report (bad glob, bad regex, bad operator value)."""


@dataclass(frozen=True, kw_only=True)
class Condition:
    """One `match` entry: a field path and a compiled test."""

    path: tuple[str, ...]
    """Field path, e.g. (`environment`,) or (`args`, `table`)."""
    spec: Any
    """The matcher as written (plain data), for warnings and explanations."""
    test: ValueTest
    """Holds for a single (non-list) value."""
    exists_only: bool | None = None
    """Set for a bare `{exists: X}`: the condition is about presence alone."""

    def holds(self, action: Mapping[str, Any]) -> bool:
        value: Any = action
        for part in self.path:
            if type(value) is dict and part in value:
                value = value[part]
            else:
                return self.exists_only is False
        if self.exists_only is not None:
            return self.exists_only
        if type(value) is list:
            test = self.test
            return any(test(v) for v in value)
        return self.test(value)


def is_glob(text: str) -> bool:
    return any(c in GLOB_CHARS for c in text)


def compile_glob(pattern: str) -> Callable[[str], bool]:
    """A case-sensitive full-match test for a shell-style glob; raises MatchSpecError."""
    if pattern == "":
        raise MatchSpecError("empty glob")
    if pattern.count("[") != pattern.count("]"):
        raise MatchSpecError(f"unbalanced `[` in glob `{pattern}`")
    for chars in _BRACKET_RE.findall(pattern):
        body = chars[1:] if chars.startswith("!") else chars
        if not body:
            raise MatchSpecError(f"empty `[]` in glob `{pattern}`")
        for lo, hi in _RANGE_RE.findall(body):
            if lo > hi:
                raise MatchSpecError(f"bad range `{lo}-{hi}` in glob `{pattern}`")
    try:
        rx = re.compile(fnmatch.translate(pattern))
    except re.error as exc:
        raise MatchSpecError(f"bad glob `{pattern}`: {exc}") from None
    match = rx.match
    return lambda s: match(s) is not None


def compile_regex(pattern: str) -> Callable[[str], bool]:
    """RE2 full match (linear time); raises MatchSpecError with RE2's message."""
    try:
        rx = re2.compile(pattern, options=_RE2_OPTIONS)
    except Exception as exc:  # re2.error; the binding raises plain errors for some inputs
        detail = str(exc)
        if detail.startswith("b'") or detail.startswith('b"'):
            detail = detail[2:-1]
        raise MatchSpecError(f"bad regex `{pattern}`: {detail}") from None
    fullmatch = rx.fullmatch
    return lambda s: type(s) is str and fullmatch(s) is not None


def _number(v: Any) -> bool:
    return (type(v) is int) or (type(v) is float and math.isfinite(v))


def _same(a: Any, b: Any) -> bool:
    """Equality that never confuses `true` with `1`."""
    if type(a) is bool or type(b) is bool:
        return type(a) is type(b) and a == b
    if _number(a) and _number(b):
        return bool(a == b)
    return type(a) is type(b) and a == b


def literal_test(spec: Any) -> ValueTest:
    """A literal: glob for strings with glob characters, else strict equality."""
    if isinstance(spec, str):
        if is_glob(spec):
            glob = compile_glob(spec)
            return lambda v: type(v) is str and glob(v)
        return lambda v: v == spec and type(v) is str
    if isinstance(spec, (dict, list)):
        raise MatchSpecError("a literal must be a string, number, boolean or null")
    return lambda v: _same(v, spec)


def _ordering(op: str, bound: Any) -> ValueTest:
    if not (_number(bound) or isinstance(bound, str)):
        raise MatchSpecError(f"`{op}` needs a number or a string, got {_kind(bound)}")
    numeric = _number(bound)

    def comparable(v: Any) -> bool:
        return _number(v) if numeric else type(v) is str

    if op == "gt":
        return lambda v: comparable(v) and v > bound
    if op == "gte":
        return lambda v: comparable(v) and v >= bound
    if op == "lt":
        return lambda v: comparable(v) and v < bound
    return lambda v: comparable(v) and v <= bound


def operator_tests(spec: Mapping[str, Any]) -> tuple[list[ValueTest], bool | None]:
    """Tests for an operator map, and the `exists` value if that is its only key."""
    tests: list[ValueTest] = []
    exists: bool | None = None
    for op, arg in spec.items():
        if op in ("gt", "gte", "lt", "lte"):
            tests.append(_ordering(op, arg))
        elif op == "eq":
            tests.append(literal_test(arg) if not isinstance(arg, str) else _equals(arg))
        elif op == "ne":
            eq = literal_test(arg) if not isinstance(arg, str) else _equals(arg)
            tests.append(_negate(eq))
        elif op in ("in", "not_in"):
            if not isinstance(arg, list):
                raise MatchSpecError(f"`{op}` needs a list, got {_kind(arg)}")
            members = _any_of([literal_test(a) for a in arg])
            tests.append(members if op == "in" else _negate(members))
        elif op == "regex":
            if not isinstance(arg, str):
                raise MatchSpecError(f"`regex` needs a string, got {_kind(arg)}")
            tests.append(compile_regex(arg))
        elif op == "exists":
            if not isinstance(arg, bool):
                raise MatchSpecError(f"`exists` needs true or false, got {_kind(arg)}")
            exists = arg
        else:
            raise MatchSpecError(
                f"unknown operator `{op}` (expected one of {', '.join(OPERATORS)})"
            )
    if exists is not None and len(spec) > 1:
        if exists is False:
            raise MatchSpecError("`exists: false` cannot be combined with other operators")
        exists = None  # `exists: true` plus others: presence is implied by the others
    return tests, exists


def _negate(test: ValueTest) -> ValueTest:
    return lambda v: not test(v)


def _any_of(tests: list[ValueTest]) -> ValueTest:
    return lambda v: any(t(v) for t in tests)


def _equals(text: str) -> ValueTest:
    # `eq`/`ne` compare exactly: no glob expansion.
    return lambda v: type(v) is str and v == text


def compile_condition(path: tuple[str, ...], spec: Any) -> Condition:
    """Compile one `match` entry; raises MatchSpecError."""
    if isinstance(spec, list):
        if not spec:
            raise MatchSpecError("an empty list matches nothing")
        alternatives = [literal_test(s) for s in spec]
        return Condition(
            path=path, spec=spec, test=lambda v: any(t(v) for t in alternatives)
        )
    if isinstance(spec, dict):
        if not spec:
            raise MatchSpecError("an empty operator map")
        tests, exists = operator_tests(spec)
        if exists is not None:
            return Condition(path=path, spec=spec, test=lambda v: True, exists_only=exists)
        if len(tests) == 1:
            return Condition(path=path, spec=spec, test=tests[0])
        return Condition(path=path, spec=spec, test=lambda v: all(t(v) for t in tests))
    return Condition(path=path, spec=spec, test=literal_test(spec))


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__
