"""guard / run / arun against the embedded store: decisions, edits, signals, outcomes, cancels."""

from __future__ import annotations

import _thread
import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest
from sdk_helpers import Desk

from interlock import (
    Action,
    Cancelled,
    ChangesRequested,
    Denied,
    Gate,
    ReviewDecision,
    SuggestOnly,
)
from interlock.store import State, Store

MakeGate = Callable[..., Gate]


def states(store: Store) -> list[str]:
    return [r.state.value for r in store.list_requests(agent="bot")]


def test_allowed_call_runs_once_and_reports_success(make_gate: MakeGate, store: Store) -> None:
    gate = make_gate()
    calls: list[str] = []

    @gate.guard(action="read_file")
    def read_file(path: str) -> str:
        calls.append(path)
        return "contents"

    assert read_file("/etc/motd") == "contents"
    assert calls == ["/etc/motd"]
    [request] = store.list_requests(agent="bot")
    assert request.state is State.SUCCEEDED
    assert request.action["args"] == {"path": "/etc/motd"}


def test_approval_with_edit_runs_with_final_args(
    make_gate: MakeGate, store: Store, desk: Desk
) -> None:
    gate = make_gate(channel=desk)
    desk.answers.append(ReviewDecision(verdict="approve", args={"to": "acme", "amount": 900}))
    paid: list[tuple[str, float]] = []

    @gate.guard(
        action="send_payment", capabilities=["payment"],
        preview=lambda to, amount: {"kind": "text", "content": f"pay {amount} to {to}"},
        describe=lambda to, amount: f"Pay {to} {amount} EUR",
    )
    def send_payment(to: str, amount: float) -> str:
        paid.append((to, amount))
        return "ok"

    assert send_payment("acme", 12000) == "ok"
    assert paid == [("acme", 900)]
    [shown] = desk.seen
    assert shown.summary == "Pay acme 12000 EUR"
    assert shown.preview == {"kind": "text", "content": "pay 12000 to acme"}
    assert shown.args == {"to": "acme", "amount": 12000}
    assert shown.why == ("rule payments",)
    assert shown.guidance == ("Check the invoice first.",)
    [request] = store.list_requests(agent="bot")
    assert request.state is State.SUCCEEDED
    assert request.action["amount"] == 12000  # filled from the argument of the same name
    assert request.final_args == {"to": "acme", "amount": 900}


def test_deny_raises_denied_with_the_reviewers_reason(make_gate: MakeGate, desk: Desk) -> None:
    gate = make_gate(channel=desk)
    desk.answers.append(ReviewDecision(verdict="deny", note="vendor is not on the allowlist"))
    ran = []

    @gate.guard(action="send_payment", capabilities=["payment"])
    def send_payment(to: str, amount: float) -> None:
        ran.append(1)

    with pytest.raises(Denied) as info:
        send_payment("mallory", 5)
    assert not ran
    assert info.value.reason == "vendor is not on the allowlist"
    assert "vendor is not on the allowlist" in str(info.value)
    assert "Do not retry it unchanged" in str(info.value)


def test_changes_requested_and_revision(make_gate: MakeGate, desk: Desk, store: Store) -> None:
    gate = make_gate(channel=desk)
    desk.answers += [ReviewDecision(verdict="request_changes", note="split it in two"),
                     ReviewDecision(verdict="approve")]
    with pytest.raises(ChangesRequested) as info:
        gate.run(Action(action="send_payment", capabilities=["payment"],
                        args={"to": "acme", "amount": 10}), lambda **kw: None)
    assert "split it in two" in str(info.value)
    first = info.value.request_id
    revised = Action(action="send_payment", capabilities=["payment"],
                     args={"to": "acme", "amount": 5}, revision_of=first)
    assert gate.run(revised, lambda to, amount: amount) == 5
    assert store.list_requests(agent="bot")[-1].revision_of == first


def test_policy_deny_and_suggest_never_run(make_gate: MakeGate) -> None:
    gate = make_gate()
    with pytest.raises(Denied, match="rule never-drop"):
        gate.run(Action(action="drop_table", args={"name": "users"}), lambda **kw: 1 / 0)
    with pytest.raises(SuggestOnly, match="only be carried out by a person"):
        gate.run(Action(action="iam.grant", args={"role": "admin"}), lambda **kw: 1 / 0)


def test_typed_confirmation_is_asked_again_until_right(make_gate: MakeGate, desk: Desk) -> None:
    gate = make_gate(channel=desk)
    desk.answers += [ReviewDecision(verdict="approve", confirmation="deploy prod"),
                     ReviewDecision(verdict="approve", confirmation="deploy production")]

    @gate.guard(action="deploy")
    def deploy(version: str, environment: str = "production") -> str:
        return f"{version}@{environment}"

    assert deploy("1.2") == "1.2@production"
    assert [s.confirmation for s in desk.seen] == ["deploy production"] * 2
    assert desk.seen[1].problem is not None and "confirmation" in desk.seen[1].problem


def test_failure_is_reported_and_reraised(make_gate: MakeGate, store: Store) -> None:
    gate = make_gate()

    @gate.guard(action="read_table")
    def read_table(name: str) -> None:
        raise RuntimeError(f"no table {name}")

    with pytest.raises(RuntimeError, match="no table users"):
        read_table("users")
    [request] = store.list_requests(agent="bot")
    assert request.state is State.FAILED
    assert request.reason == "RuntimeError: no table users"


def test_redacted_arguments_reach_the_function(make_gate: MakeGate, store: Store) -> None:
    gate = make_gate()
    got = []

    @gate.guard(action="read_account")
    def read_account(user: str, password: str) -> None:
        got.append(password)

    read_account("ann", password="hunter2")
    assert got == ["hunter2"]
    [request] = store.list_requests(agent="bot")
    assert request.action["args"]["password"] == "[redacted]"


def test_methods_and_opaque_arguments(make_gate: MakeGate, store: Store) -> None:
    gate = make_gate()

    class Repo:
        @gate.guard(action="read_rows")
        def read_rows(self, conn: object, *ids: int, limit: int = 10, **opts: Any) -> tuple:
            return (self, conn, ids, limit, opts)

    repo, conn = Repo(), object()
    assert repo.read_rows(conn, 1, 2, limit=5, order="id") == (repo, conn, (1, 2), 5,
                                                               {"order": "id"})
    args = store.list_requests(agent="bot")[0].action["args"]
    assert args["ids"] == [1, 2] and args["limit"] == 5 and args["order"] == "id"
    assert args["conn"].startswith("<object")
    assert "self" not in args


def test_async_guard_and_arun(make_gate: MakeGate, desk: Desk, store: Store) -> None:
    gate = make_gate(channel=desk)
    desk.answers.append(ReviewDecision(verdict="approve"))

    @gate.guard(action="send_payment", capabilities=["payment"])
    async def send_payment(to: str, amount: float) -> str:
        await asyncio.sleep(0)
        return f"paid {to}"

    async def fetch(url: str) -> str:
        return url.upper()

    async def main() -> tuple[str, str]:
        return (await send_payment("acme", 3),
                await gate.arun(Action(action="read_url", args={"url": "x"}), fetch))

    assert asyncio.run(main()) == ("paid acme", "X")
    assert states(store) == ["succeeded", "succeeded"]


def test_asyncio_cancellation_cancels_the_pending_request(
    make_gate: MakeGate, store: Store
) -> None:
    gate = make_gate()  # web channel: nobody decides in-process

    async def never() -> None:
        raise AssertionError("must not run")

    async def main() -> None:
        act = Action(action="send_payment", capabilities=["payment"], args={"amount": 1})
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(gate.arun(act, never), 0.3)

    asyncio.run(main())
    [request] = store.list_requests(agent="bot")
    assert request.state is State.CANCELLED
    assert "cancelled" in (request.reason or "")


def test_caller_timeout_cancels(make_gate: MakeGate, store: Store) -> None:
    gate = make_gate()

    @gate.guard(action="send_payment", capabilities=["payment"], timeout=0.2)
    def send_payment(amount: float) -> None:
        raise AssertionError("must not run")

    with pytest.raises(Cancelled, match="timeout"):
        send_payment(5)
    assert states(store) == ["cancelled"]


def test_ctrl_c_cancels(make_gate: MakeGate, store: Store) -> None:
    gate = make_gate()
    timer = threading.Timer(0.3, _thread.interrupt_main)
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        gate.run(Action(action="send_payment", capabilities=["payment"], args={}),
                 lambda: None)
    timer.join()
    [request] = store.list_requests(agent="bot")
    assert request.state is State.CANCELLED
    assert request.reason == "the agent was interrupted while waiting (Ctrl-C)"
