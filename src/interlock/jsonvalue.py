"""JSON as interlock takes it: text parsed strictly, and values checked before they are stored.

Every face (HTTP API, embedded SDK, CLI, MCP proxy) refuses the same things, each with
BadInput naming the place (`$.args["a b"][0]`): NaN and infinities, integers longer than
MAX_INT_DIGITS, text that is not Unicode (a lone surrogate), nesting deeper than MAX_DEPTH,
and Python values JSON has no form for. What passes is stored, hashed and served back as
the same JSON.
"""

from __future__ import annotations

import json
import sys
from typing import Any, TypeAlias

from interlock.errors import BadInput, TooLarge

#: The most bytes of JSON interlock takes in one request body or one action (413 beyond).
MAX_BODY = 1024 * 1024
#: The most levels of nesting, the outermost object being level 1 (422 beyond).
MAX_DEPTH = 32
#: The most digits in one integer. Python's default bound, pinned here so that no
#: process-wide setting can make reading a long number quadratic.
MAX_INT_DIGITS = 4300

#: Where a value sits: (parent, key), innermost last; None is the top, shown as `$`.
_Path: TypeAlias = "tuple[_Path, str | int] | None"
#: What is wrong, what with, and where: e.g. ("surrogate", "\\ud800", path).
_Problem: TypeAlias = "tuple[str, Any, _Path]"

_SMALL = 10**18  # integers inside it need no digit count
_TOO_LONG = 10**MAX_INT_DIGITS
_ESCAPE_BOUND = 6  # bytes one character can take in JSON text (`\u001f`)
_ITEM_BOUND = 32  # bytes one scalar item takes at most besides its text: quotes, `:`, `,`, digits


class MalformedJson(BadInput):
    """400: text that is not JSON at all."""

    status = 400
    code = "invalid_json"


class _Refused:
    """What the strict parser leaves where the text holds a number interlock refuses, so
    that the check which follows can say where it was."""

    __slots__ = ("why",)

    def __init__(self, why: str) -> None:
        self.why = why


def _constant(name: str) -> _Refused:
    return _Refused(f"`{name}` is not a JSON number")


def _integer(digits: str) -> int | _Refused:
    count = len(digits) - digits.startswith("-")
    if count <= MAX_INT_DIGITS:
        try:
            return int(digits)
        except ValueError:  # a lower bound set for the whole process
            pass
    limit = min(MAX_INT_DIGITS, sys.get_int_max_str_digits() or MAX_INT_DIGITS)
    return _Refused(f"a number of {count} digits is longer than the {limit} interlock reads")


def loads(data: str | bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """JSON text as a Python value, refused where interlock would not store it.

    MalformedJson (400) when it does not parse; BadInput (422) naming the place for NaN,
    infinities, overlong integers, lone surrogates and nesting deeper than `max_depth`.
    Bytes are decoded strictly (UTF-8, or UTF-16/32 when they start so), so the only lone
    surrogates that can reach the value are `\\udXXX` escapes: strings are checked for
    them only when the text holds one."""
    if isinstance(data, str):
        text = data
        # A str may carry raw surrogates (argv, where bytes that are not UTF-8 end up).
        strings = "\\ud" in text or "\\uD" in text or _surrogate(text) is not None
    else:
        try:
            text = data.decode(json.detect_encoding(data))
        except UnicodeDecodeError as exc:
            raise MalformedJson(f"not valid JSON: the bytes are not {exc.encoding} text "
                                f"(byte {exc.start + 1})") from None
        strings = "\\ud" in text or "\\uD" in text
    try:
        value = json.loads(text, parse_constant=_constant, parse_int=_integer)
    except RecursionError:
        raise BadInput(f"the JSON is nested deeper than {max_depth} levels",
                       code="too_deep") from None
    except json.JSONDecodeError as exc:
        raise MalformedJson(f"not valid JSON: {exc.msg} at line {exc.lineno} "
                            f"column {exc.colno}") from None
    problem, _ = _find(value, strings=strings, max_depth=max_depth)
    if problem is not None:
        raise _refusal(problem, max_depth, parsed=True)
    return value


def check(value: Any, *, max_depth: int = MAX_DEPTH, max_bytes: int | None = None) -> None:
    """Refuse a value built in Python that interlock would not store as JSON.

    BadInput (422) naming the place, as `loads` would; with `max_bytes`, TooLarge (413)
    when its compact UTF-8 JSON is longer. Dicts, lists and tuples (read as lists) of
    str, int, float, bool and None pass; keys must be text."""
    problem, bound = _find(value, strings=True, max_depth=max_depth)
    if problem is not None:
        raise _refusal(problem, max_depth, parsed=False)
    # The bound is counted on the way, so a small value is never encoded just to be measured.
    if max_bytes is not None and bound > max_bytes:
        size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
        if size > max_bytes:
            raise TooLarge(f"the JSON is {size} bytes, over the {max_bytes} interlock takes")


def _find(value: Any, *, strings: bool, max_depth: int) -> tuple[_Problem | None, int]:
    """The first problem found (not necessarily the first in the text), and a bound on the
    size of the value's compact JSON (meaningful when there is no problem).

    Iterative, so depth is never limited by Python's own recursion; plain str, int, float,
    bool and None are judged where they sit, the rest when taken from the stack."""
    stack: list[tuple[Any, int, _Path]] = [(value, 1, None)]
    pop, push = stack.pop, stack.append
    chars = items = 0
    while stack:
        item, depth, path = pop()
        keyed = isinstance(item, dict)
        if not keyed and not isinstance(item, (list, tuple)):
            what = _scalar(item, strings)
            if what is not None:
                return (*what, path), 0
            if isinstance(item, str):
                chars += len(item)
            elif isinstance(item, int):
                chars += item.bit_length() // 3 + 1
            continue
        if depth > max_depth:
            return ("deep", None, path), 0
        items += len(item)
        pairs = item.items() if keyed else enumerate(item)
        for key, child in pairs:
            if keyed:
                if type(key) is not str or (strings and not key.isascii()):
                    if not isinstance(key, str):
                        return ("key", type(key).__name__, path), 0
                    bad = _surrogate(key)
                    if bad is not None:
                        return ("key_surrogate", bad, path), 0
                chars += len(key)
            kind = type(child)
            if kind is str:
                chars += len(child)
                if strings and not child.isascii():
                    bad = _surrogate(child)
                    if bad is not None:
                        return ("surrogate", bad, (path, key)), 0
            elif kind is float:
                if child - child != 0.0:  # NaN or an infinity
                    return ("number", child, (path, key)), 0
            elif kind is int:
                if not -_SMALL < child < _SMALL:
                    if not -_TOO_LONG < child < _TOO_LONG:
                        return ("long", None, (path, key)), 0
                    chars += child.bit_length() // 3 + 1
            elif kind is not bool and child is not None:
                push((child, depth + 1, (path, key)))
    return None, _ESCAPE_BOUND * chars + _ITEM_BOUND * (items + 1)


def _scalar(item: Any, strings: bool) -> tuple[str, Any] | None:
    """What is wrong with a value that is not a list or dict (the rare types land here)."""
    if item is None or isinstance(item, bool):
        return None
    if isinstance(item, str):
        bad = _surrogate(item) if strings else None
        return None if bad is None else ("surrogate", bad)
    if isinstance(item, int):
        return None if -_TOO_LONG < item < _TOO_LONG else ("long", None)
    if isinstance(item, float):
        return None if item - item == 0.0 else ("number", item)
    if isinstance(item, _Refused):
        return ("refused", item.why)
    return ("type", type(item).__name__)


def _refusal(problem: _Problem, max_depth: int, *, parsed: bool) -> BadInput:
    kind, what, path = problem
    where = path_text(path)
    if kind == "deep":
        return BadInput(f"the JSON is nested deeper than {max_depth} levels (at `{where}`)",
                        code="too_deep")
    if kind == "surrogate":
        message = f"the text at `{where}` holds a lone surrogate `{what}`"
    elif kind == "key_surrogate":
        message = f"a key in `{where}` holds a lone surrogate `{what}`"
    elif kind == "key":
        message = f"a key in `{where}` is a `{what}`, not text"
    elif kind == "number" and what != what:
        message = f"`NaN` is not a JSON number (at `{where}`)"
    elif kind == "number" and parsed:  # the literals themselves were refused by the parser
        message = f"the number at `{where}` is too large: it reads as infinity"
    elif kind == "number":
        message = f"`{'-' if what < 0 else ''}Infinity` is not a JSON number (at `{where}`)"
    elif kind == "long":
        message = (f"the integer at `{where}` is longer than the {MAX_INT_DIGITS} digits "
                   "interlock reads")
    elif kind == "refused":
        message = f"{what} (at `{where}`)"
    else:
        message = f"a `{what}` is not a JSON value (at `{where}`)"
    return BadInput(message, code="bad_json")


def _surrogate(text: str) -> str | None:
    """`\\udXXX` for the first unpaired surrogate, which no UTF-8 output can carry."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"\\u{ord(text[exc.start]):04x}"
    return None


def path_text(path: _Path) -> str:
    """`$.args.items[2].name` (`$` alone is the top); odd keys quoted, long paths cut short."""
    parts: list[str] = []
    while path is not None:
        path, key = path
        if isinstance(key, int):
            parts.append(f"[{key}]")
        elif key.isidentifier():
            parts.append(f".{key[:60]}")
        else:
            parts.append(f"[{json.dumps(key[:60])}]")
    text = "$" + "".join(reversed(parts))
    return text if len(text) <= 80 else text[:77] + "..."


__all__ = ["MAX_BODY", "MAX_DEPTH", "MAX_INT_DIGITS", "MalformedJson", "check", "loads",
           "path_text"]
