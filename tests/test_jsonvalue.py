"""jsonvalue: strict parsing, the check of built values, the places named, the size bound."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from interlock import jsonvalue
from interlock.errors import BadInput, TooLarge
from interlock.jsonvalue import MAX_DEPTH, MAX_INT_DIGITS, MalformedJson


def nested(depth: int) -> Any:
    """`depth` levels of objects, the outermost being level 1."""
    value: Any = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ('{"a": NaN}', "`NaN` is not a JSON number (at `$.a`)"),
        ('{"args": {"a": Infinity}}', "`Infinity` is not a JSON number (at `$.args.a`)"),
        ('[1, -Infinity]', "`-Infinity` is not a JSON number (at `$[1]`)"),
        ('{"args": {"a": 1e999}}', "the number at `$.args.a` is too large"),
        ('{"a": -1E+400}', "the number at `$.a` is too large"),
        ('{"args": {"a b": ["\\udfff"]}}',
         'the text at `$.args["a b"][0]` holds a lone surrogate `\\udfff`'),
        ('{"args": {"\\ud800x": 1}}', "a key in `$.args` holds a lone surrogate `\\ud800`"),
        ('{"a": "\\ud83d\\ude00 \\ud83d"}', "the text at `$.a` holds a lone surrogate `\\ud83d`"),
        ('{"n": ' + "9" * 5000 + "}", "a number of 5000 digits is longer than the 4300"),
        ('{"n": [-' + "1" * (MAX_INT_DIGITS + 1) + "]}", f"{MAX_INT_DIGITS + 1} digits"),
        ('"\udcff"', "the text at `$` holds a lone surrogate `\\udcff`"),  # argv's bytes
    ],
)
def test_loads_refuses_what_json_cannot_carry_and_says_where(text: str, said: str) -> None:
    with pytest.raises(BadInput) as caught:
        jsonvalue.loads(text)
    assert caught.value.status == 422 and caught.value.code == "bad_json"
    assert said in caught.value.message


def test_loads_takes_strict_json_unchanged() -> None:
    text = '{"a": [1, -2.5e10, "é\\u00e9", "\\ud83d\\ude00", "\\\\ud800", null, true], "b": {}}'
    assert jsonvalue.loads(text) == json.loads(text)
    assert jsonvalue.loads(text.encode()) == json.loads(text)
    assert jsonvalue.loads(text.encode("utf-16")) == json.loads(text)
    assert jsonvalue.loads("9" * MAX_INT_DIGITS) == int("9" * MAX_INT_DIGITS)
    assert jsonvalue.loads(json.dumps(nested(MAX_DEPTH))) == nested(MAX_DEPTH)


@pytest.mark.parametrize(
    ("text", "depth", "at"),
    [
        (json.dumps(nested(MAX_DEPTH + 1)), MAX_DEPTH, " (at `$.a.a.a"),
        ("[" * 50_000 + "]" * 50_000, MAX_DEPTH, ""),  # past Python's own recursion
        (json.dumps({"x": [[[1]]]}), 3, " (at `$.x[0][0]`)"),
    ],
    ids=["33-deep", "50000-deep", "limit-3"],
)
def test_nesting_past_the_limit_is_too_deep(text: str, depth: int, at: str) -> None:
    with pytest.raises(BadInput) as caught:
        jsonvalue.loads(text, max_depth=depth)
    assert caught.value.code == "too_deep"
    assert f"nested deeper than {depth} levels{at}" in caught.value.message


@pytest.mark.parametrize(
    ("data", "said"),
    [
        (b"{nope", "not valid JSON: Expecting property name enclosed in double quotes at line 1 "
                   "column 2"),
        (b"", "not valid JSON: Expecting value at line 1 column 1"),
        (b'{"a": "\xed\xa0\x80"}', "the bytes are not utf-8 text (byte 8)"),  # CESU-8
        (b'{"a": "\xff"}', "the bytes are not utf-8 text (byte 8)"),
        ("\ufeff{}", "Unexpected UTF-8 BOM"),
    ],
)
def test_text_that_is_not_json_is_malformed(data: str | bytes, said: str) -> None:
    with pytest.raises(MalformedJson) as caught:
        jsonvalue.loads(data)
    assert caught.value.status == 400 and caught.value.code == "invalid_json"
    assert said in caught.value.message


def test_a_surrogate_pair_escape_is_fine_and_only_lone_ones_are_refused() -> None:
    assert jsonvalue.loads(b'["\\uD83D\\uDE00"]') == ["\U0001f600"]
    with pytest.raises(BadInput, match="lone surrogate `\\\\udc00`"):
        jsonvalue.loads(b'["\\uDC00\\uD83D\\uDE00"]')


class Opaque:
    pass


@pytest.mark.parametrize(
    ("value", "code", "said"),
    [
        ({"a": float("nan")}, "bad_json", "`NaN` is not a JSON number (at `$.a`)"),
        ({"a": [0, float("inf")]}, "bad_json", "`Infinity` is not a JSON number (at `$.a[1]`)"),
        ({"a": (float("-inf"),)}, "bad_json", "`-Infinity` is not a JSON number (at `$.a[0]`)"),
        ({"a": {"b c": "x\ud800"}}, "bad_json",
         'the text at `$.a["b c"]` holds a lone surrogate `\\ud800`'),
        ({"args": {"\udfff": 1}}, "bad_json", "a key in `$.args` holds a lone surrogate"),
        ({"args": {1: "x"}}, "bad_json", "a key in `$.args` is a `int`, not text"),
        ({"args": {"when": datetime.date(2024, 1, 2)}}, "bad_json",
         "a `date` is not a JSON value (at `$.args.when`)"),
        ({"args": {"s": {1, 2}}}, "bad_json", "a `set` is not a JSON value (at `$.args.s`)"),
        ({"args": [Opaque()]}, "bad_json", "a `Opaque` is not a JSON value (at `$.args[0]`)"),
        ({"n": 10**MAX_INT_DIGITS}, "bad_json", "the integer at `$.n` is longer than the 4300"),
        ({"n": [-(10**MAX_INT_DIGITS)]}, "bad_json", "the integer at `$.n[0]` is longer"),
        (nested(MAX_DEPTH + 1), "too_deep", "nested deeper than 32 levels (at `$.a.a"),
        ({"a": [[[[]]]]}, "too_deep", "nested deeper than 4 levels (at `$.a[0][0][0]`)"),
    ],
)
def test_check_refuses_built_values_and_says_where(value: Any, code: str, said: str) -> None:
    depth = 4 if said.startswith("nested deeper than 4") else MAX_DEPTH
    with pytest.raises(BadInput) as caught:
        jsonvalue.check(value, max_depth=depth)
    assert caught.value.code == code
    assert said in caught.value.message


def test_check_takes_json_values_tuples_and_subclasses() -> None:
    import enum

    class Level(enum.IntEnum):
        HIGH = 3

    class Name(str):
        pass

    jsonvalue.check({"a": [1, 2.5, True, None, "é", "\U0001f600"], "b": ("x", Level.HIGH),
                     "c": Name("n"), "d": 10**MAX_INT_DIGITS - 1, "e": nested(MAX_DEPTH - 1)})
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(BadInput, match="nested deeper"):
        jsonvalue.check(loop)


def test_check_measures_size_only_near_the_limit() -> None:
    jsonvalue.check({"a": "x" * 1000}, max_bytes=1020)
    with pytest.raises(TooLarge) as caught:
        jsonvalue.check({"a": "x" * 1000}, max_bytes=1000)
    assert caught.value.status == 413
    assert caught.value.message == "the JSON is 1008 bytes, over the 1000 interlock takes"
    # Compact UTF-8, as stored: é is two bytes, and no spaces.
    jsonvalue.check({"a": ["é"] * 100}, max_bytes=len('{"a":[]}') + 100 * 5 - 1)
    with pytest.raises(TooLarge):
        jsonvalue.check({"a": ["é"] * 100}, max_bytes=len('{"a":[]}') + 100 * 5 - 2)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(-(10**400), 10**400)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None)
@given(value=json_values)
def test_any_json_value_passes_and_its_size_bound_holds(value: Any) -> None:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    size = len(text.encode())
    problem, bound = jsonvalue._find(value, strings=True, max_depth=MAX_DEPTH)
    assert problem is None
    assert bound >= size
    assert jsonvalue.loads(text) == json.loads(text)
    jsonvalue.check(value, max_bytes=size)
    with pytest.raises(TooLarge):
        jsonvalue.check(value, max_bytes=size - 1)
