"""`when` conditions: CEL compiled once at load, with a Python fast path for simple comparisons.

Every expression is compiled by the CEL library (`common-expression-language`) so syntax
errors are caught at load. Expressions made only of fields, literals, comparisons, `in`,
`has()`, `!`, `&&` and `||` are also compiled to Python closures that answer the common
cases exactly as CEL would; whenever a closure meets a case it does not model (a value
of an unusual type, an error whose message matters) it hands over to the CEL library, so
the library's semantics stay the reference.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import cel

#: Names the policy adds beside the action's own fields.
EXTRA_NAMES = frozenset({"risk", "novel", "novel_recipients", "failures"})

#: An estimated cost above this applies the rule as a CEL error would.
COST_LIMIT = 100_000

_MACROS = ("all", "exists", "exists_one", "map", "filter")


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: The value depends on a field the action lacks (CEL: no such key / undeclared reference).
MISSING: Any = _Sentinel("MISSING")
#: The fast path cannot say: ask the CEL library.
UNKNOWN: Any = _Sentinel("UNKNOWN")

Node = Callable[[Mapping[str, Any], Mapping[str, Any]], Any]


@dataclass(frozen=True, kw_only=True)
class CelFailure:
    """A `when` that did not give a bool."""

    missing: bool
    """True when the error was caused only by fields the action lacks."""
    message: str
    """CEL's message, for the reasons."""


@dataclass(frozen=True, kw_only=True)
class _Macro:
    receiver: str
    children: tuple[_Macro, ...]


class CelCondition:
    """One compiled `when` expression."""

    __slots__ = ("_fast", "_macros", "_program", "_tokens", "_variables", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self._program = cel.compile(source)  # raises ValueError on a syntax error
        # Only these reach the library: copying a whole action costs more than evaluating.
        self._variables = tuple(str(v) for v in self._program.variables())
        self._fast: Node | None = _FastCompiler.try_compile(source)
        self._tokens = max(1, len(_TOKEN_RE.findall(source)))
        self._macros = _find_macros(source)

    @property
    def has_fast_path(self) -> bool:
        return self._fast is not None

    @property
    def fast(self) -> Node | None:
        """The compiled closure: True, False, MISSING, or anything else to mean "ask CEL"."""
        return self._fast

    def evaluate(self, action: Mapping[str, Any], extras: Mapping[str, Any]) -> bool | CelFailure:
        """True / False, or a CelFailure saying whether only missing fields caused it."""
        fast = self._fast
        if fast is not None:
            value = fast(action, extras)
            if value is True or value is False:
                return value
            if value is MISSING:
                return _MISSING_FAILURE
        return self._evaluate_library(action, extras)

    def _evaluate_library(
        self, action: Mapping[str, Any], extras: Mapping[str, Any]
    ) -> bool | CelFailure:
        activation: dict[str, Any] = {}
        for name in self._variables:
            if name in extras:
                activation[name] = extras[name]
            elif name in action:
                activation[name] = action[name]
        if self._macros:
            cost = self.estimate_cost(activation)
            if cost > COST_LIMIT:
                return CelFailure(
                    missing=False,
                    message=f"cost limit: estimated cost {cost} > {COST_LIMIT}",
                )
        try:
            value = self._program.execute(activation)
        except RuntimeError as exc:
            text = str(exc)
            m = _UNDEFINED_RE.match(text)
            if m is not None and m.group(1) in self._variables and m.group(1) not in activation:
                return _MISSING_FAILURE
            if m is not None:  # a method the value's type lacks: no such overload
                return CelFailure(missing=False, message=f"no such overload: `{m.group(1)}`")
            return CelFailure(missing=False, message=_first_line(text))
        except KeyError as exc:
            return CelFailure(missing=True, message=f"no such key: {exc}")
        except Exception as exc:  # the library raises TypeError, ValueError, ZeroDivision...
            return CelFailure(missing=False, message=_first_line(f"{type(exc).__name__}: {exc}"))
        if value is True or value is False:
            return bool(value)
        return CelFailure(
            missing=False, message=f"`when` must give a bool, got {type(value).__name__}"
        )

    def estimate_cost(self, activation: Mapping[str, Any]) -> int:
        """Tokens times the iterations of every macro, nested macros multiplying."""
        widest: list[int] = []

        def size_of(receiver: str) -> int:
            value: Any = activation
            for part in receiver.split("."):
                if isinstance(value, Mapping) and part in value:
                    value = value[part]
                else:
                    value = None
                    break
            if isinstance(value, (list, dict, str)):
                return max(1, len(value))
            if not widest:
                widest.append(_widest_collection(activation))
            return widest[0]

        def cost(macro: _Macro) -> int:
            return size_of(macro.receiver) * (1 + sum(cost(c) for c in macro.children))

        return self._tokens * (1 + sum(cost(m) for m in self._macros))


_MISSING_FAILURE = CelFailure(missing=True, message="missing field")
_UNDEFINED_RE = re.compile(r"Undefined variable or function: '([^']*)'")


def compile_condition(source: str) -> CelCondition:
    """Compile `source`; raises ValueError with CEL's message on a syntax error."""
    return CelCondition(source)


def _first_line(text: str) -> str:
    """CEL's message cut to its first sentence, so reasons stay readable."""
    line = text.strip().splitlines()[0] if text.strip() else "error"
    head, dot, _ = line.partition(". ")
    return head if dot else line


def _widest_collection(value: Any, depth: int = 0) -> int:
    best = 1
    if depth > 64:
        return best
    if isinstance(value, Mapping):
        best = max(best, len(value))
        for v in value.values():
            best = max(best, _widest_collection(v, depth + 1))
    elif isinstance(value, list):
        best = max(best, len(value))
        for v in value:
            best = max(best, _widest_collection(v, depth + 1))
    return best


_MACRO_RE = re.compile(r"([A-Za-z_][\w.]*)\s*\.\s*(" + "|".join(_MACROS) + r")\s*\(")


def _find_macros(source: str) -> tuple[_Macro, ...]:
    """The macro calls of `source` as a nesting tree (receiver text of each)."""
    found: list[tuple[int, str]] = []  # (position of the opening paren, receiver)
    for m in _MACRO_RE.finditer(_mask_strings(source)):
        found.append((m.end() - 1, m.group(1)))
    if not found:
        return ()
    # Match parens to learn each macro's extent, then nest by containment.
    masked = _mask_strings(source)
    close: dict[int, int] = {}
    stack: list[int] = []
    for i, ch in enumerate(masked):
        if ch == "(":
            stack.append(i)
        elif ch == ")" and stack:
            close[stack.pop()] = i
    spans = [(start, close.get(start, len(source)), recv) for start, recv in found]

    def build(lo: int, hi: int) -> tuple[_Macro, ...]:
        out: list[_Macro] = []
        pos = lo
        for start, end, recv in spans:
            if start < pos or start >= hi:
                continue
            out.append(_Macro(receiver=recv, children=build(start + 1, end)))
            pos = end
        return tuple(out)

    return build(0, len(source) + 1)


def _mask_strings(source: str) -> str:
    return re.sub(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"", lambda m: "_" * len(m.group()), source)


# --- the fast path ----------------------------------------------------------------------

_TOKEN_RE = re.compile(
    r"""\s*(?:
      (?P<num>\d+\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\d+)(?![\w.])
    | (?P<str>'[^'\\\n]*'|"[^"\\\n]*")
    | (?P<ident>[A-Za-z_]\w*)
    | (?P<op>==|!=|<=|>=|&&|\|\||[<>!()\[\],.\-])
    | (?P<other>\S)
    )""",
    re.VERBOSE,
)

_RESERVED = frozenset({
    "as", "break", "const", "continue", "else", "for", "function", "if", "import", "let",
    "loop", "package", "namespace", "return", "var", "void", "while",
})

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class _Unsupported(Exception):
    """The expression uses something the fast path does not compile."""


def _simple_kind(v: Any) -> int:
    """0: not simple; 1: number; 2: string; 3: bool; 4: null."""
    t = type(v)
    if t is str:
        return 2
    if t is bool:
        return 3
    if t is int:
        return 1 if _INT64_MIN <= v <= _INT64_MAX else 0
    if t is float:
        return 1 if math.isfinite(v) else 0
    if v is None:
        return 4
    return 0


def _equal(left: Any, right: Any) -> Any:
    kl, kr = _simple_kind(left), _simple_kind(right)
    if not kl or not kr:
        return UNKNOWN
    if kl != kr:
        return False
    return left == right


def _ordered(left: Any, right: Any, op: str) -> Any:
    kl, kr = _simple_kind(left), _simple_kind(right)
    if not kl or kl != kr or kl == 4:
        return UNKNOWN
    if op == "<":
        return left < right
    if op == "<=":
        return left <= right
    if op == ">":
        return left > right
    return left >= right


def _contains(item: Any, container: Any) -> Any:
    if type(container) is list:
        unknown = False
        for element in container:
            eq = _equal(item, element)
            if eq is True:
                return True
            if eq is UNKNOWN:
                unknown = True
        return UNKNOWN if unknown else False
    if type(container) is dict and type(item) is str:
        return item in container
    return UNKNOWN


class _FastCompiler:
    """Recursive descent over the supported subset, producing closures."""

    def __init__(self, source: str) -> None:
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(source):
            m = _TOKEN_RE.match(source, pos)
            if m is None:
                if source[pos:].strip():
                    raise _Unsupported(source[pos:])
                break
            pos = m.end()
            kind = m.lastgroup
            if kind is None or kind == "other":
                raise _Unsupported(m.group())
            self.tokens.append((kind, m.group(kind)))
        self.i = 0

    @classmethod
    def try_compile(cls, source: str) -> Node | None:
        try:
            compiler = cls(source)
            node = compiler.expr()
            if compiler.i != len(compiler.tokens):
                return None
            return node
        except (_Unsupported, IndexError, RecursionError):
            return None

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, value: str) -> bool:
        tok = self.peek()
        if tok is not None and tok[1] == value and tok[0] in ("op", "ident"):
            self.i += 1
            return True
        return False

    def expect(self, value: str) -> None:
        if not self.take(value):
            raise _Unsupported(value)

    def expr(self) -> Node:
        node = self.conjunction()
        while self.take("||"):
            node = _or(node, self.conjunction())
        return node

    def conjunction(self) -> Node:
        node = self.relation()
        while self.take("&&"):
            node = _and(node, self.relation())
        return node

    def relation(self) -> Node:
        left = self.unary()
        tok = self.peek()
        if tok is not None and tok[1] in ("==", "!=", "<", "<=", ">", ">=", "in"):
            self.i += 1
            right = self.unary()
            nxt = self.peek()
            if nxt is not None and nxt[1] in ("==", "!=", "<", "<=", ">", ">=", "in"):
                raise _Unsupported("chained relation")
            return _relation(tok[1], left, right)
        return left

    def unary(self) -> Node:
        if self.take("!"):
            return _not(self.unary())
        return self.primary()

    def primary(self) -> Node:
        tok = self.peek()
        if tok is None:
            raise _Unsupported("end")
        kind, text = tok
        if text == "(" and kind == "op":
            self.i += 1
            node = self.expr()
            self.expect(")")
            return node
        if text == "[" and kind == "op":
            return _const(self.list_literal())
        if kind in ("num", "str") or text in ("-", "true", "false", "null"):
            return _const(self.literal())
        if kind == "ident":
            if text == "has":
                self.i += 1
                self.expect("(")
                path = self.path()
                self.expect(")")
                if len(path) < 2:
                    raise _Unsupported("has() needs a field selection")
                return _has(path)
            path = self.path()
            nxt = self.peek()
            if nxt is not None and nxt[1] == "(" and nxt[0] == "op":
                # `receiver.method(arg)`: the string methods most conditions use.
                method, receiver = path[-1], path[:-1]
                if not receiver:
                    raise _Unsupported(f"function {method}")
                self.i += 1
                if method not in _STRING_METHODS:
                    raise _Unsupported(f"method {method}")
                arg = self.literal()
                self.expect(")")
                if type(arg) is not str:
                    raise _Unsupported("string method needs a string literal")
                return _string_method(_field(receiver), method, arg)
            return _field(path)
        raise _Unsupported(text)

    def path(self) -> tuple[str, ...]:
        parts = [self.ident()]
        while self.take("."):
            parts.append(self.ident())
        return tuple(parts)

    def ident(self) -> str:
        tok = self.peek()
        if tok is None or tok[0] != "ident":
            raise _Unsupported("identifier")
        name = tok[1]
        if name in _RESERVED or name in ("in", "true", "false", "null", "has"):
            raise _Unsupported(name)
        self.i += 1
        nxt = self.peek()
        if nxt is not None and nxt[1] == "[":
            raise _Unsupported("index")  # indexing: library only
        return name

    def literal(self) -> Any:
        kind, text = self.tokens[self.i]
        self.i += 1
        if text == "-" and kind == "op":
            kind, text = self.tokens[self.i]
            self.i += 1
            if kind != "num":
                raise _Unsupported("unary minus")
            text = "-" + text
        if kind == "num":
            if any(c in text for c in ".eE"):
                return float(text)
            value = int(text)
            if not _INT64_MIN <= value <= _INT64_MAX:
                raise _Unsupported("int out of range")
            return value
        if kind == "str":
            return text[1:-1]
        if text == "true":
            return True
        if text == "false":
            return False
        if text == "null":
            return None
        raise _Unsupported(text)

    def list_literal(self) -> list[Any]:
        self.expect("[")
        values: list[Any] = []
        while not self.take("]"):
            values.append(self.literal())
            if not self.take(","):
                self.expect("]")
                break
        return values


def _const(value: Any) -> Node:
    def node(a: Mapping[str, Any], x: Mapping[str, Any]) -> Any:
        return value

    node.const = value  # type: ignore[attr-defined]
    return node


def _field(path: tuple[str, ...]) -> Node:
    head, rest = path[0], path[1:]
    extra = head in EXTRA_NAMES

    def lookup(a: Mapping[str, Any], x: Mapping[str, Any]) -> Any:
        value = (x if extra else a).get(head, MISSING)
        for part in rest:
            if value is MISSING:
                return MISSING
            if type(value) is not dict:
                return UNKNOWN
            value = value.get(part, MISSING)
        return value

    if not rest:
        if extra:
            return lambda a, x: x.get(head, MISSING)

        def top(a: Mapping[str, Any], x: Mapping[str, Any]) -> Any:
            return a.get(head, MISSING)

        top.field = head  # type: ignore[attr-defined]
        return top
    return lookup


_STRING_METHODS = ("startsWith", "endsWith", "contains")


def _string_method(receiver: Node, method: str, arg: str) -> Node:
    def node(a: Mapping[str, Any], x: Mapping[str, Any]) -> Any:
        v = receiver(a, x)
        if type(v) is str:
            if method == "startsWith":
                return v.startswith(arg)
            if method == "endsWith":
                return v.endswith(arg)
            return arg in v
        return v if v is MISSING else UNKNOWN

    return node


def _has(path: tuple[str, ...]) -> Node:
    base = _field(path[:-1])
    last = path[-1]

    def node(a: Mapping[str, Any], x: Mapping[str, Any]) -> Any:
        value = base(a, x)
        if value is MISSING or value is UNKNOWN:
            return value
        if type(value) is dict:
            return last in value
        return UNKNOWN

    return node


def _relation(op: str, left: Node, right: Node) -> Node:
    const = getattr(right, "const", MISSING)
    if op in ("==", "!="):
        negate = op == "!="
        if const is not MISSING and _simple_kind(const):
            kind_c = _simple_kind(const)

            def eq_const(a: Mapping[str, Any], x: Mapping[str, Any]) -> Any:
                v = left(a, x)
                if v is MISSING or v is UNKNOWN:
                    return v
                kv = _simple_kind(v)
                if not kv:
                    return UNKNOWN
                return (kv == kind_c and v == const) is not negate

            return eq_const

        def eq(a: Mapping[str, Any], x: Mapping[str, Any]) -> Any:
            lv = left(a, x)
            rv = right(a, x)
            for v in (lv, rv):
                if v is UNKNOWN:
                    return UNKNOWN
            if lv is MISSING or rv is MISSING:
                return MISSING
            result = _equal(lv, rv)
            if result is UNKNOWN:
                return UNKNOWN
            return result is not negate

        return eq
    if op == "in":

        def within(a: Mapping[str, Any], x: Mapping[str, Any]) -> Any:
            lv = left(a, x)
            rv = right(a, x)
            if lv is UNKNOWN or rv is UNKNOWN:
                return UNKNOWN
            if lv is MISSING or rv is MISSING:
                return MISSING
            return _contains(lv, rv)

        return within

    kind_c = _simple_kind(const) if const is not MISSING else 0
    field = getattr(left, "field", None)
    if kind_c == 1 and field is not None and op in (">", ">=", "<", "<="):
        return _compare_field(field, op, const)
    if kind_c == 1:
        # The common shape `field > 10000`: one closure, no helper calls.
        def cmp_num(a: Mapping[str, Any], x: Mapping[str, Any]) -> Any:
            v = left(a, x)
            t = type(v)
            if t is int or t is float:
                if _simple_kind(v) != 1:
                    return UNKNOWN
                if op == ">":
                    return v > const
                if op == ">=":
                    return v >= const
                if op == "<":
                    return v < const
                return v <= const
            if v is MISSING:
                return MISSING
            return UNKNOWN

        return cmp_num

    def cmp(a: Mapping[str, Any], x: Mapping[str, Any]) -> Any:
        lv = left(a, x)
        rv = right(a, x)
        if lv is UNKNOWN or rv is UNKNOWN:
            return UNKNOWN
        if lv is MISSING or rv is MISSING:
            return MISSING
        return _ordered(lv, rv, op)

    return cmp


def _compare_field(name: str, op: str, bound: Any) -> Node:
    """`field OP number` as one closure: the shape most `when` conditions take.

    Four near-identical closures on purpose: choosing the operator once, here, keeps a
    branch on `op` out of every decision.
    """

    def gt(a: Mapping[str, Any], x: Mapping[str, Any]) -> Any:
        v: Any = a.get(name, MISSING)
        t = type(v)
        if (t is int and _INT64_MIN <= v <= _INT64_MAX) or (t is float and v - v == 0):
            return v > bound
        return MISSING if v is MISSING else UNKNOWN

    def ge(a: Mapping[str, Any], x: Mapping[str, Any]) -> Any:
        v: Any = a.get(name, MISSING)
        t = type(v)
        if (t is int and _INT64_MIN <= v <= _INT64_MAX) or (t is float and v - v == 0):
            return v >= bound
        return MISSING if v is MISSING else UNKNOWN

    def lt(a: Mapping[str, Any], x: Mapping[str, Any]) -> Any:
        v: Any = a.get(name, MISSING)
        t = type(v)
        if (t is int and _INT64_MIN <= v <= _INT64_MAX) or (t is float and v - v == 0):
            return v < bound
        return MISSING if v is MISSING else UNKNOWN

    def le(a: Mapping[str, Any], x: Mapping[str, Any]) -> Any:
        v: Any = a.get(name, MISSING)
        t = type(v)
        if (t is int and _INT64_MIN <= v <= _INT64_MAX) or (t is float and v - v == 0):
            return v <= bound
        return MISSING if v is MISSING else UNKNOWN

    return {">": gt, ">=": ge, "<": lt, "<=": le}[op]


def _and(left: Node, right: Node) -> Node:
    def node(a: Mapping[str, Any], x: Mapping[str, Any]) -> Any:
        lv = left(a, x)
        if lv is False:
            return False
        rv = right(a, x)
        if rv is False:
            return False
        if lv is True and rv is True:
            return True
        if lv is UNKNOWN or rv is UNKNOWN:
            return UNKNOWN
        if (lv is True or lv is MISSING) and (rv is True or rv is MISSING):
            return MISSING
        return UNKNOWN  # a non-bool operand: CEL's error, with CEL's message

    return node


def _or(left: Node, right: Node) -> Node:
    def node(a: Mapping[str, Any], x: Mapping[str, Any]) -> Any:
        lv = left(a, x)
        if lv is True:
            return True
        rv = right(a, x)
        if rv is True:
            return True
        if lv is False and rv is False:
            return False
        if lv is UNKNOWN or rv is UNKNOWN:
            return UNKNOWN
        if (lv is False or lv is MISSING) and (rv is False or rv is MISSING):
            return MISSING
        return UNKNOWN

    return node


def _not(inner: Node) -> Node:
    def node(a: Mapping[str, Any], x: Mapping[str, Any]) -> Any:
        v = inner(a, x)
        if v is True:
            return False
        if v is False:
            return True
        if v is MISSING:
            return MISSING
        return UNKNOWN

    return node
