"""`when` conditions: CEL compiled once at load, with a Python fast path for simple comparisons.

Every expression is compiled by the CEL library (`common-expression-language`) so syntax
errors are caught at load. Expressions made only of fields, literals, comparisons, `in`,
`has()`, `!`, `&&`, `||` and three string methods are also parsed into a small tree and
written out as Python (`emit`) that answers the common cases exactly as CEL would; the
engine inlines the same code in its generated rule tests. Whenever that code meets a case
it does not model (a value of an unusual type, an error whose message matters) it hands
over to the CEL library, so the library's semantics stay the reference.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import cel

from interlock.policy.pysource import SourceWriter

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

    __slots__ = ("_fast", "_macros", "_program", "_tokens", "_variables", "expr", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self._program = cel.compile(source)  # raises ValueError on a syntax error
        # Only these reach the library: copying a whole action costs more than evaluating.
        self._variables = tuple(str(v) for v in self._program.variables())
        self.expr: Expr | None = _FastCompiler.try_compile(source)
        """The fast path's tree, for code that inlines it (None: library only)."""
        self._fast: Node | None = None if self.expr is None else _compile_fast(self.expr)
        self._tokens = max(1, len(_TOKEN_RE.findall(source)))
        self._macros = _find_macros(source)

    @property
    def has_fast_path(self) -> bool:
        return self._fast is not None

    @property
    def reads(self) -> frozenset[str]:
        """The top-level names the fast path reads (action fields or extras)."""
        return frozenset() if self.expr is None else _heads(self.expr)

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
    def try_compile(cls, source: str) -> Expr | None:
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

    def expr(self) -> Expr:
        node = self.conjunction()
        while self.take("||"):
            node = _Logic("||", node, self.conjunction())
        return node

    def conjunction(self) -> Expr:
        node = self.relation()
        while self.take("&&"):
            node = _Logic("&&", node, self.relation())
        return node

    def relation(self) -> Expr:
        left = self.unary()
        tok = self.peek()
        if tok is not None and tok[1] in ("==", "!=", "<", "<=", ">", ">=", "in"):
            self.i += 1
            right = self.unary()
            nxt = self.peek()
            if nxt is not None and nxt[1] in ("==", "!=", "<", "<=", ">", ">=", "in"):
                raise _Unsupported("chained relation")
            return _Relation(tok[1], left, right)
        return left

    def unary(self) -> Expr:
        if self.take("!"):
            return _Not(self.unary())
        return self.primary()

    def primary(self) -> Expr:
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
            return _Const(self.list_literal())
        if kind in ("num", "str") or text in ("-", "true", "false", "null"):
            return _Const(self.literal())
        if kind == "ident":
            if text == "has":
                self.i += 1
                self.expect("(")
                path = self.path()
                self.expect(")")
                if len(path) < 2:
                    raise _Unsupported("has() needs a field selection")
                return _Has(path)
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
                return _Method(_Field(receiver), method, arg)
            return _Field(path)
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


_STRING_METHODS = ("startsWith", "endsWith", "contains")


@dataclass(frozen=True, slots=True)
class _Const:
    value: Any


@dataclass(frozen=True, slots=True)
class _Field:
    path: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Method:
    receiver: _Field
    method: str
    arg: str


@dataclass(frozen=True, slots=True)
class _Has:
    path: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Relation:
    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class _Logic:
    op: str
    """`&&` or `||`."""
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class _Not:
    inner: Expr


Expr = _Const | _Field | _Method | _Has | _Relation | _Logic | _Not


def _heads(expr: Expr) -> frozenset[str]:
    """The top-level names `expr` reads."""
    if isinstance(expr, _Field | _Has):
        return frozenset(expr.path[:1])
    if isinstance(expr, _Method):
        return _heads(expr.receiver)
    if isinstance(expr, _Relation | _Logic):
        return _heads(expr.left) | _heads(expr.right)
    if isinstance(expr, _Not):
        return _heads(expr.inner)
    return frozenset()


def _compile_fast(expr: Expr) -> Node:
    """`expr` as one Python function of (action, extras)."""
    w = SourceWriter()
    w.line(0, "def fast(a, x):")
    emit(expr, w, 1, "r")
    w.line(1, "return r")
    w.lines[1:1] = w.field_loads(1, w.name("MISSING", MISSING))
    fast: Node = w.run("<interlock cel fast path>")["fast"]
    return fast


def emit(expr: Expr, w: SourceWriter, depth: int, target: str) -> None:
    """Statements (at `depth`) setting `target` to the value of `expr` over the action `a`
    and the extras `x`: a value, MISSING, or UNKNOWN (ask the library), as CEL would answer.
    The action's fields are read through `w.field`: the caller writes `w.field_loads`.
    """
    missing = w.name("MISSING", MISSING)
    unknown = w.name("UNKNOWN", UNKNOWN)
    put = w.line
    t = target
    if isinstance(expr, _Const):
        put(depth, f"{t} = {w.const(expr.value)}")
    elif isinstance(expr, _Field):
        head, rest = expr.path[0], expr.path[1:]
        if head in EXTRA_NAMES:
            put(depth, f"{t} = x.get({w.const(head)}, {missing})")
        else:
            put(depth, f"{t} = {w.field(head)}")
        for part in rest:
            put(depth, f"if {t} is not {missing}:")
            put(depth + 1, f"{t} = {t}.get({w.const(part)}, {missing}) if type({t}) is dict "
                           f"else {unknown}")
    elif isinstance(expr, _Method):
        emit(expr.receiver, w, depth, t)
        arg = w.const(expr.arg)
        call = {"startsWith": f"{t}.startswith({arg})", "endsWith": f"{t}.endswith({arg})",
                "contains": f"{arg} in {t}"}[expr.method]
        put(depth, f"if type({t}) is str:")
        put(depth + 1, f"{t} = {call}")
        put(depth, f"elif {t} is not {missing}:")
        put(depth + 1, f"{t} = {unknown}")
    elif isinstance(expr, _Has):
        emit(_Field(expr.path[:-1]), w, depth, t)
        put(depth, f"if {t} is not {missing} and {t} is not {unknown}:")
        put(depth + 1, f"{t} = {w.const(expr.path[-1])} in {t} if type({t}) is dict "
                       f"else {unknown}")
    elif isinstance(expr, _Relation):
        _emit_relation(expr, w, depth, t)
    elif isinstance(expr, _Logic):
        left, right = w.fresh("l"), w.fresh("r")
        # `&&`: false wins over errors; `||`: true does (CEL's commutative logic).
        wins, loses = ("False", "True") if expr.op == "&&" else ("True", "False")
        emit(expr.left, w, depth, left)
        put(depth, f"if {left} is {wins}:")
        put(depth + 1, f"{t} = {wins}")
        put(depth, "else:")
        emit(expr.right, w, depth + 1, right)
        put(depth + 1, f"if {right} is {wins}:")
        put(depth + 2, f"{t} = {wins}")
        put(depth + 1, f"elif {left} is {loses} and {right} is {loses}:")
        put(depth + 2, f"{t} = {loses}")
        put(depth + 1, f"elif {left} is {unknown} or {right} is {unknown}:")
        put(depth + 2, f"{t} = {unknown}")
        put(depth + 1, f"elif ({left} is {loses} or {left} is {missing}) and "
                       f"({right} is {loses} or {right} is {missing}):")
        put(depth + 2, f"{t} = {missing}")
        put(depth + 1, "else:")
        put(depth + 2, f"{t} = {unknown}  # a non-bool operand: CEL's error, CEL's message")
    else:
        emit(expr.inner, w, depth, t)
        put(depth, f"if {t} is True:")
        put(depth + 1, f"{t} = False")
        put(depth, f"elif {t} is False:")
        put(depth + 1, f"{t} = True")
        put(depth, f"elif {t} is not {missing}:")
        put(depth + 1, f"{t} = {unknown}")


def _emit_relation(expr: _Relation, w: SourceWriter, depth: int, t: str) -> None:
    missing = w.name("MISSING", MISSING)
    unknown = w.name("UNKNOWN", UNKNOWN)
    put = w.line
    op, right = expr.op, expr.right
    const = right.value if isinstance(right, _Const) else None
    kind = _simple_kind(const) if isinstance(right, _Const) else 0
    if op in ("==", "!=") and kind:
        negate = op == "!="
        emit(expr.left, w, depth, t)
        c = w.const(const)
        if kind == 2:  # a string: the common `environment == "production"`
            put(depth, f"if type({t}) is str:")
            put(depth + 1, f"{t} = {t} {op} {c}")
            put(depth, f"elif {t} is not {missing} and {t} is not {unknown}:")
            # Another simple kind is never equal; anything else is CEL's to answer.
            put(depth + 1, f"{t} = {negate} if {w.name('simple_kind', _simple_kind)}({t}) "
                           f"else {unknown}")
            return
        put(depth, f"if {t} is not {missing} and {t} is not {unknown}:")
        k = w.fresh("k")
        put(depth + 1, f"{k} = {w.name('simple_kind', _simple_kind)}({t})")
        put(depth + 1, f"{t} = (({k} == {kind} and {t} == {c}) is not {negate}) if {k} "
                       f"else {unknown}")
        return
    if op in ("<", "<=", ">", ">=") and kind == 1:
        # `field > 10000`: a number in CEL's range compares; MISSING stays; else CEL says.
        emit(expr.left, w, depth, t)
        put(depth, f"if (type({t}) is int and {_INT64_MIN} <= {t} <= {_INT64_MAX}) or "
                   f"(type({t}) is float and {t} - {t} == 0):")
        put(depth + 1, f"{t} = {t} {op} {w.const(const)}")
        put(depth, f"elif {t} is not {missing}:")
        put(depth + 1, f"{t} = {unknown}")
        return
    left, right_value = w.fresh("l"), w.fresh("r")
    emit(expr.left, w, depth, left)
    emit(right, w, depth, right_value)
    put(depth, f"if {left} is {unknown} or {right_value} is {unknown}:")
    put(depth + 1, f"{t} = {unknown}")
    put(depth, f"elif {left} is {missing} or {right_value} is {missing}:")
    put(depth + 1, f"{t} = {missing}")
    put(depth, "else:")
    if op in ("==", "!="):
        put(depth + 1, f"{t} = {w.name('equal', _equal)}({left}, {right_value})")
        put(depth + 1, f"if {t} is not {unknown}:")
        put(depth + 2, f"{t} = {t} is not {op == '!='}")
    elif op == "in":
        put(depth + 1, f"{t} = {w.name('contains', _contains)}({left}, {right_value})")
    else:
        put(depth + 1, f"{t} = {w.name('ordered', _ordered)}({left}, {right_value}, {op!r})")
