"""Rule tests compiled to Python source: one function per set of rules a narrowed context
leaves, testing them all inline and answering from that context's results.

The source is built only from the validated policy, never from an action: constants appear
as `repr` of plain strings and numbers, everything else is passed in by name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from interlock.policy.cel import EXTRA_NAMES, emit
from interlock.policy.match import Condition, is_glob
from interlock.policy.model import Rule
from interlock.policy.pysource import SourceWriter
from interlock.policy.records import PolicyResult

#: `decide(action, risk_rank)` for one narrowed context.
Decide = Callable[[Mapping[str, Any], int], PolicyResult]
#: `fill(action, risk_rank, mask)`: the result for a mask not cached yet (it caches it).
Fill = Callable[[Mapping[str, Any], int, int], Any]
#: Builds a context's `decide` from its results cache and its `fill`.
Factory = Callable[[dict[int, Any], Fill], Decide]

_ORDERING = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


@dataclass(frozen=True, slots=True)
class Layout:
    """How a mask encodes the outcome of a context's rule tests."""

    rules: tuple[tuple[int, Rule], ...]
    """(bit, rule): the rule matches."""
    lacking: tuple[tuple[Rule, tuple[tuple[int, str], ...]], ...]
    """Per rule with `requires`: (bit, field) for each required field found missing or null."""


@dataclass(frozen=True, slots=True)
class Runtime:
    """What every generated function of one policy calls or reads."""

    general: Callable[[Mapping[str, Any], Any], Any]
    """The engine's reference path, for any outcome the source does not model."""
    no_facts: Any
    missing: Any
    """The CEL fast path's MISSING."""
    extras: Sequence[Mapping[str, Any]]
    """What `when` sees beside the action, by risk rank."""
    threshold: float | None
    """`escalation.confidence_below`."""
    escalate: Callable[[Any, Any], Any]
    """`escalate((result, cache), confidence)`: the result raised by a low confidence."""


def compile_tests(
    kept: Sequence[tuple[Rule, tuple[Condition, ...]]], runtime: Runtime
) -> tuple[Factory, Layout]:
    """The factory of `decide` functions for contexts that leave `kept` (rule, conditions)."""
    w = SourceWriter()
    w.line(0, "def factory(results, fill):")
    w.line(1, "def decide(a, rank):")
    header = len(w.lines)
    w.line(2, "m = 0")
    bits = _Bits()
    rule_bits: list[tuple[int, Rule]] = []
    lacking: list[tuple[Rule, tuple[tuple[int, str], ...]]] = []
    reads_extras = False
    for rule, conditions in kept:
        bit = bits.take()
        rule_bits.append((bit, rule))
        fields, extras = _emit_rule(w, 2, rule, conditions, bit, bits)
        reads_extras = reads_extras or extras
        if fields:
            lacking.append((rule, fields))
    loads = w.field_loads(2, w.name("MISSING", runtime.missing))
    if reads_extras:
        loads.append("        x = X[rank]")
    w.lines[header:header] = loads
    w.line(2, "hit = results.get(m << 2 | rank)")
    w.line(2, "if hit is None:")
    w.line(3, "hit = fill(a, rank, m)")
    if runtime.threshold is not None:
        # Only results that escalation may raise are cached as (result, cache) tuples.
        w.line(2, "if type(hit) is tuple:")
        w.line(3, "c = a.get('confidence')")
        w.line(3, f"if (type(c) is float or type(c) is int) and c < {w.const(runtime.threshold)}:")
        w.line(4, "return escalate(hit, c)")
        w.line(3, "return hit[0]")
    w.line(2, "return hit")
    w.line(1, "return decide")
    w.name("X", runtime.extras)
    w.name("general", runtime.general)
    w.name("NO_FACTS", runtime.no_facts)
    w.name("MISSING", runtime.missing)
    w.name("escalate", runtime.escalate)
    factory: Factory = w.run("<interlock policy tests>")["factory"]
    return factory, Layout(rules=tuple(rule_bits), lacking=tuple(lacking))


class _Bits:
    def __init__(self) -> None:
        self.next = 1

    def take(self) -> int:
        bit = self.next
        self.next <<= 1
        return bit


_GENERAL = "return general(a, NO_FACTS)"


def _emit_rule(
    w: SourceWriter, depth: int, rule: Rule, conditions: tuple[Condition, ...], bit: int,
    bits: _Bits,
) -> tuple[tuple[tuple[int, str], ...], bool]:
    """Write the test of one rule; returns its lacking-field bits and whether it reads `x`.

    Mirrors `engine.rule_test`: match conditions in order, then `requires`, then `when`;
    any outcome other than match / no match hands the action to the general path.
    """
    w.line(depth, f"# rule {_comment(rule.name)}")
    if conditions:
        w.line(depth, f"if {' and '.join(condition_code(c, w) for c in conditions)}:")
        depth += 1
    when = rule.when
    fields: list[tuple[int, str]] = []
    if rule.requires:
        if not all(len(p) == 1 for p in rule.requires):
            w.line(depth, _GENERAL)
            return (), False
        w.line(depth, "l = 0")
        for (name,) in rule.requires:
            field_bit = bits.take()
            fields.append((field_bit, name))
            value = w.field(name)
            w.line(depth, f"if {value} is None or {value} is MISSING:")
            w.line(depth + 1, f"l |= {field_bit}")
        w.line(depth, "if l:")
        w.line(depth + 1, f"m |= {bit} | l")  # the rule applies, with a note (rule 2)
        w.line(depth, "else:")
        depth += 1
    if when is None:
        w.line(depth, f"m |= {bit}")
        return tuple(fields), False
    if when.expr is None:  # only the CEL library can say
        w.line(depth, _GENERAL)
        return tuple(fields), False
    emit(when.expr, w, depth, "o")  # the expression written out in place
    w.line(depth, "if o is True:")
    w.line(depth + 1, f"m |= {bit}")
    w.line(depth, "elif o is not False and o is not MISSING and o is not None:")
    w.line(depth + 1, _GENERAL)
    return tuple(fields), bool(when.reads & EXTRA_NAMES)


def _comment(text: str) -> str:
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def condition_code(cond: Condition, src: SourceWriter) -> str:
    """A Python expression over `a` that holds exactly when `cond.predicate()(a)` does.

    Inline for the shapes most rules use, over the fields loaded once (`src.field`: an
    absent field is MISSING there, where the predicates see None); a call to the compiled
    predicate for the rest.
    """
    path, spec, exists = cond.path, cond.spec, cond.exists_only
    if not all(type(p) is str for p in path):
        return f"{src.bind(cond.predicate(), 'c')}(a)"
    if len(path) == 2 and exists is None:
        outer, inner = path
        spread = src.bind(_any_value(cond.test), "s")
        parent = src.field(outer)
        return (
            f"(type({parent}) is dict"
            f" and (v := {parent}.get({src.const(inner)})) is not None"
            f" and ({spread}(v) if type(v) is list else {_value_code(cond, src)}))"
        )
    if len(path) != 1:
        return f"{src.bind(cond.predicate(), 'c')}(a)"
    if exists is not None:
        v = src.field(path[0])
        if exists:
            return f"({v} is not None and {v} is not MISSING)"
        return f"({v} is None or {v} is MISSING)"
    if type(spec) is str and not is_glob(spec):
        v, s = src.field(path[0]), src.const(spec)
        return f"({v} == {s} or (type({v}) is list and {s} in {v}))"
    if type(spec) is list and all(type(x) is str and not is_glob(x) for x in spec):
        v = src.field(path[0])
        members = src.bind(frozenset(spec), "k")
        spread = src.bind(cond.predicate(), "c")
        return (f"({v} in {members} if type({v}) is str"
                f" else (type({v}) is list and {spread}(a)))")
    ordering = _single_ordering(spec)
    if ordering is not None:
        v = src.field(path[0])
        op, bound = ordering
        spread = src.bind(cond.predicate(), "c")
        return (f"({v} {op} {src.const(bound)} if (t := type({v})) is int"
                f" or t is float else (t is list and {spread}(a)))")
    return f"{src.bind(cond.predicate(), 'c')}(a)"


def _value_code(cond: Condition, src: SourceWriter) -> str:
    """An expression over one non-list value `v` that holds exactly when `cond.test(v)` does."""
    spec = cond.spec
    if type(spec) is str and not is_glob(spec):
        return f"(v == {src.const(spec)} and type(v) is str)"
    if spec is True or spec is False:
        return f"(v is {spec!r})"  # `_same`: a bool equals only the same bool
    ordering = _single_ordering(spec)
    if ordering is not None:
        op, bound = ordering
        # `_ordering`: finite numbers only (inf - inf and nan - nan are not 0).
        return (f"((type(v) is int or (type(v) is float and v - v == 0))"
                f" and v {op} {src.const(bound)})")
    return f"{src.bind(cond.test, 't')}(v)"


def _single_ordering(spec: Any) -> tuple[str, int | float] | None:
    if type(spec) is not dict or len(spec) != 1:
        return None
    ((op, bound),) = spec.items()
    if op not in _ORDERING:
        return None
    if type(bound) is int or (type(bound) is float and math.isfinite(bound)):
        return _ORDERING[op], bound
    return None


def _any_value(test: Callable[[Any], bool]) -> Callable[[list[Any]], bool]:
    def spread(values: list[Any]) -> bool:
        for v in values:
            if test(v):
                return True
        return False

    return spread
