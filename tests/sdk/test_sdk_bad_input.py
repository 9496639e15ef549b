"""Embedded mode refuses what no HTTP body could carry: nothing is stored, nothing runs.

With no server in between, the agent's own Python values reach the gateway: NaN, a lone
surrogate, nesting past the limit, a set or a date, an action of megabytes. Each is
BadInput (or TooLarge) naming where, before the store is touched.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import pytest

from interlock import Action, Gate
from interlock.errors import BadInput, TooLarge
from interlock.jsonvalue import MAX_BODY, MAX_DEPTH
from interlock.store import Store

MakeGate = Callable[..., Gate]


def footprint(store: Store) -> tuple[tuple[int, str], int]:
    return store.audit_head(), len(store.list_requests(limit=100_000))


def nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    ("action", "code", "said"),
    [
        (Action(action="read_file", args={"a": float("nan")}), "bad_json",
         "`NaN` is not a JSON number (at `$.args.a`)"),
        (Action(action="read_file", args={"a": [float("-inf")]}), "bad_json",
         "`-Infinity` is not a JSON number (at `$.args.a[0]`)"),
        (Action(action="read_file", confidence=float("nan")), "bad_json", "(at `$.confidence`)"),
        (Action(action="read_file", args={"p": "x\ud800"}), "bad_json",
         "the text at `$.args.p` holds a lone surrogate `\\ud800`"),
        (Action(action="read_file", args={"\udcff": 1}), "bad_json",
         "a key in `$.args` holds a lone surrogate `\\udcff`"),
        (Action(action="read_file", reason="cut \ud83d"), "bad_json", "the text at `$.reason`"),
        (Action(action="read_file", args={"p": nested(40)}), "too_deep",
         f"nested deeper than {MAX_DEPTH} levels (at `$.args.p.a.a"),
        (Action(action="read_file", checkpoint=nested(40)), "too_deep", "(at `$.checkpoint.a"),
        (Action(action="read_file", args={"when": datetime.date(2024, 1, 2)}), "bad_json",
         "a `date` is not a JSON value (at `$.args.when`)"),
        (Action(action="read_file", args={"tags": {"a", "b"}}), "bad_json",
         "a `set` is not a JSON value (at `$.args.tags`)"),
        (Action(action="read_file", args={1: "one"}), "bad_json",  # type: ignore[dict-item]
         "a key in `$.args` is a `int`, not text"),
        (Action(action="read_file", args={"n": 10**5000}), "bad_json",
         "the integer at `$.args.n` is longer than the 4300 digits"),
    ],
    ids=["nan", "-inf", "nan-confidence", "surrogate", "surrogate-key", "surrogate-reason",
         "depth-40", "deep-checkpoint", "date", "set", "int-key", "long-int"],
)
def test_submit_refuses_values_json_cannot_carry_and_stores_nothing(
    make_gate: MakeGate, store: Store, action: Action, code: str, said: str
) -> None:
    gate = make_gate()
    before = footprint(store)
    with pytest.raises(BadInput) as caught:
        gate.submit(action)
    assert caught.value.code == code and caught.value.status == 422
    assert said in caught.value.message
    assert footprint(store) == before


def test_run_and_guard_refuse_before_anything_runs(make_gate: MakeGate, store: Store) -> None:
    gate = make_gate()
    before = footprint(store)
    calls: list[Any] = []

    @gate.guard(action="read_file")
    def read_file(path: str, ratio: float) -> str:
        calls.append((path, ratio))
        return "contents"

    with pytest.raises(BadInput, match="NaN"):
        read_file("a", float("nan"))
    with pytest.raises(BadInput, match="lone surrogate"):
        read_file("a\udc80", 1.0)
    with pytest.raises(BadInput, match="nested deeper"):
        gate.run(Action(action="read_file", args={"p": nested(MAX_DEPTH)}), calls.append)
    assert calls == [] and footprint(store) == before
    assert read_file("fine \U0001f600", 0.5) == "contents"
    assert calls == [("fine \U0001f600", 0.5)]


def test_an_action_over_the_body_limit_is_too_large(make_gate: MakeGate, store: Store) -> None:
    gate = make_gate()
    before = footprint(store)
    with pytest.raises(TooLarge) as caught:
        gate.submit(Action(action="read_file", args={"blob": "x" * MAX_BODY}))
    assert caught.value.status == 413 and f"over the {MAX_BODY}" in caught.value.message
    assert footprint(store) == before
    ticket = gate.submit(Action(action="read_file", args={"blob": "é" * (MAX_BODY // 4)}))
    assert store.get(ticket.id).action["args"]["blob"] == "é" * (MAX_BODY // 4)
