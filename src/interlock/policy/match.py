"""`match` conditions compiled to predicates over an action.

A condition is a field path and a matcher; a literal string with glob characters is a
glob, a list is any-of, a mapping is operators that must all hold. For a list-valued field
a matcher holds when any element matches; a field the action lacks never matches, except
under `exists: false`.
"""

from __future__ import annotations

import fnmatch
import functools
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

    def predicate(self) -> Callable[[Mapping[str, Any]], bool]:
        """`holds` as one specialised closure for the shapes most rules use."""
        if len(self.path) == 2 and self.exists_only is None:
            return self._nested()
        if len(self.path) != 1:
            return self.holds
        key, test, exists, spec = self.path[0], self.test, self.exists_only, self.spec
        if exists is not None:
            return lambda a: (a.get(key) is not None) is exists
        if isinstance(spec, str) and not is_glob(spec):
            return lambda a: (v := a.get(key)) == spec or (type(v) is list and spec in v)
        if isinstance(spec, list) and all(isinstance(x, str) and not is_glob(x) for x in spec):
            members = frozenset(spec)

            def any_of(a: Mapping[str, Any]) -> bool:
                v = a.get(key)
                if type(v) is str:
                    return v in members
                if type(v) is list:
                    for x in v:
                        if type(x) is str and x in members:
                            return True
                return False

            return any_of
        if isinstance(spec, dict) and len(spec) == 1:
            (op, bound), = spec.items()
            if op in ("gt", "gte", "lt", "lte") and _number(bound):
                return _numeric(key, op, bound, test)

        def check(a: Mapping[str, Any]) -> bool:
            v = a.get(key)
            if v is None:
                return False
            if type(v) is list:
                for x in v:
                    if test(x):
                        return True
                return False
            return test(v)

        return check

    def _nested(self) -> Callable[[Mapping[str, Any]], bool]:
        """`args.force: true` and the like: two lookups, then the test."""
        outer, inner = self.path
        test = self.test

        def nested(a: Mapping[str, Any]) -> bool:
            parent = a.get(outer)
            if type(parent) is not dict:
                return False
            v = parent.get(inner)
            if v is None:
                return False
            if type(v) is list:
                for x in v:
                    if test(x):
                        return True
                return False
            return test(v)

        return nested

    def rule_test(self) -> Callable[[Mapping[str, Any], Any], bool]:
        """A two-argument test for a rule made of this one condition (the engine's shape)."""
        spec = self.spec
        if len(self.path) == 1 and isinstance(spec, str) and not is_glob(spec):
            key = self.path[0]
            # `environment: production`, `capabilities: payment`: no call below this one.
            return lambda a, x: (v := a.get(key)) == spec or (type(v) is list and spec in v)
        one = self.predicate()
        return lambda a, x: one(a)

    def holds(self, action: Mapping[str, Any]) -> bool:
        value: Any = action
        for part in self.path:
            if isinstance(value, Mapping) and value.get(part) is not None:
                value = value[part]
            else:  # missing or null: only `exists: false` matches
                return self.exists_only is False
        if self.exists_only is not None:
            return self.exists_only
        if type(value) is list:
            test = self.test
            return any(test(v) for v in value)
        return self.test(value)


def _numeric(
    key: str, op: str, bound: Any, test: ValueTest
) -> Callable[[Mapping[str, Any]], bool]:
    """`{gt: 500}` and friends on a top-level field, as one closure."""

    def compare(a: Mapping[str, Any]) -> bool:
        v: Any = a.get(key)
        t = type(v)
        if t is int or t is float:
            if op == "gt":
                return bool(v > bound)
            if op == "gte":
                return bool(v >= bound)
            if op == "lt":
                return bool(v < bound)
            return bool(v <= bound)
        if t is list:
            for x in v:
                if test(x):
                    return True
        return False

    return compare


def is_glob(text: str) -> bool:
    return any(c in GLOB_CHARS for c in text)


@functools.lru_cache(maxsize=4096)
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


def _all_of(tests: list[ValueTest]) -> ValueTest:
    def all_of(v: Any) -> bool:
        for t in tests:
            if not t(v):
                return False
        return True

    return all_of


def _negate(test: ValueTest) -> ValueTest:
    return lambda v: not test(v)


def _any_of(tests: list[ValueTest]) -> ValueTest:
    def any_of(v: Any) -> bool:
        for t in tests:
            if t(v):
                return True
        return False

    return any_of


def _equals(text: str) -> ValueTest:
    # `eq`/`ne` compare exactly: no glob expansion.
    return lambda v: type(v) is str and v == text


def compile_condition(path: tuple[str, ...], spec: Any) -> Condition:
    """Compile one `match` entry; raises MatchSpecError."""
    if isinstance(spec, list):
        if not spec:
            raise MatchSpecError("an empty list matches nothing")
        return Condition(path=path, spec=spec, test=_any_of([literal_test(s) for s in spec]))
    if isinstance(spec, dict):
        if not spec:
            raise MatchSpecError("an empty operator map")
        tests, exists = operator_tests(spec)
        if exists is not None:
            return Condition(path=path, spec=spec, test=lambda v: True, exists_only=exists)
        if len(tests) == 1:
            return Condition(path=path, spec=spec, test=tests[0])
        return Condition(path=path, spec=spec, test=_all_of(tests))
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
