"""Fail closed, fail open with a journal, the terminal channel, and the public names."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import interlock
from interlock import Action, Gate
from interlock.errors import StoreUnavailable
from interlock.sdk import signals
from interlock.sdk.channels import ReviewRequest, TerminalChannel, render
from interlock.sdk.embedded import store_errors
from interlock.store import State, Store

MakeGate = Callable[..., Gate]


def _unreachable(gate: Gate, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlalchemy as sa

    def broken(body: dict[str, Any]) -> Any:
        with store_errors():
            raise sa.exc.OperationalError("INSERT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(gate.client, "submit", broken)
    monkeypatch.setattr(gate.client, "submit_claiming", broken)


def test_unreachable_store_fails_closed_except_fail_open(
    make_gate: MakeGate, store: Store, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    gate = make_gate()
    _unreachable(gate, monkeypatch)
    ran: list[str] = []

    with pytest.raises(StoreUnavailable, match="fail closed"):
        gate.run(Action(action="send_payment", capabilities=["payment"], args={"amount": 1}),
                 lambda amount: ran.append("payment"))
    # allowed by a rule with fail_open: true -> runs, and is journaled
    assert gate.run(Action(action="read_report", args={"day": "mon"}),
                    lambda day: ran.append(day) or "report") == "report"
    assert ran == ["mon"]
    assert store.list_requests(agent="bot") == []
    runs = gate.journal.runs()
    assert [(r.body["action"], r.status) for r in runs] == [("read_report", "succeeded")]
    lines = [json.loads(x) for x in gate.journal.path.read_text().splitlines()]
    assert {x["format"] for x in lines} == {1}

    monkeypatch.undo()  # the store is back: the next call audits the fail-open run
    gate.run(Action(action="read_other", args={}), lambda: None)
    audited = {r.action_name: r for r in store.list_requests(agent="bot")}
    assert audited["read_report"].state is State.SUCCEEDED
    assert "ran fail-open" in (audited["read_report"].reason or "")
    assert audited["read_report"].idempotency_key == runs[0].key
    assert gate.journal.runs() == []


def test_unwritable_journal_means_nothing_runs(
    make_gate: MakeGate, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    gate = make_gate(state_dir=blocker)
    _unreachable(gate, monkeypatch)
    with pytest.raises(StoreUnavailable, match="journal cannot be written"):
        gate.run(Action(action="read_report", args={}), lambda: pytest.fail("ran"))


def _view(**extra: Any) -> ReviewRequest:
    base: dict[str, Any] = dict(
        id="01", action="deploy", agent="bot", summary="Deploy 1.2", risk="high",
        why=("rule prod-deploy",), rules=("prod-deploy",), reason="release day",
        preview={"kind": "diff", "content": "-1.1\n+1.2"}, args={"version": "1.2"},
        environment="production", confirmation="deploy production",
    )
    base.update(extra)
    return ReviewRequest(**base)


def test_terminal_channel_shows_everything_and_edits() -> None:
    out = io.StringIO()
    answers = io.StringIO("e\nversion=\"1.3\"\n\na\ndeploy prod\ndeploy production\nlgtm\n")
    decision = TerminalChannel(input=answers, output=out, reviewer="rita").review(_view())
    assert decision is not None
    assert decision.verdict == "approve" and decision.args == {"version": "1.3"}
    assert decision.confirmation == "deploy production" and decision.note == "lgtm"
    shown = out.getvalue()
    for part in ("Deploy 1.2", "risk:     high", "rule prod-deploy", "release day",
                 "  | +1.2", '"version": "1.2"', "`deploy production`"):
        assert part in shown


def test_terminal_channel_deny_and_no_terminal() -> None:
    deny = TerminalChannel(input=io.StringIO("d\n\nnot today\n"), output=io.StringIO())
    decision = deny.review(_view(confirmation=None))
    assert decision is not None and (decision.verdict, decision.note) == ("deny", "not today")
    closed = TerminalChannel(input=io.StringIO(""), output=io.StringIO())
    assert closed.review(_view()) is None
    assert "preview (diff)" in render(_view())


def test_public_names_are_complete_and_sorted() -> None:
    names = interlock.__all__
    assert names == sorted(names)
    for name in names:
        assert getattr(interlock, name) is not None
    exported = {n for n in names if n != "__version__"}
    kinds = {k.__name__ for k in vars(signals).values()
             if isinstance(k, type) and issubclass(k, signals.Signal)}
    assert kinds <= exported
    assert {"Action", "Gate", "Ticket"} <= exported
    assert set(dir(interlock)) >= set(names)
    with pytest.raises(AttributeError):
        _ = interlock.nothing_here  # type: ignore[attr-defined]


def test_signals_are_not_interlock_errors() -> None:
    from interlock.errors import InterlockError

    for kind in signals.BY_STATE.values():
        assert not issubclass(kind, InterlockError)
        text = str(kind(request_id="01", action="x", reason="because"))
        assert "because" in text and "01" in text
