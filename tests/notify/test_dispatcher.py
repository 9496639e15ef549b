"""The dispatcher: who hears of what, through Apprise and signed webhooks, once per event."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa
from notify_helpers import BOT, Receiver

from interlock.clock import FakeClock
from interlock.gateway import Gateway, Principal
from interlock.notify import Dispatcher, parse_config, verify
from interlock.notify.deliveries import DUE, NEXT_DUE
from interlock.notify.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER
from interlock.store import State, Store
from interlock.store import schema as t

SECRET = "s3cret-for-tests"


def dispatcher(gateway: Gateway, clock: FakeClock, targets: list[dict[str, Any]],
               **extra: Any) -> tuple[Dispatcher, list[float]]:
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(seconds)

    config = parse_config({"targets": targets, **extra})
    return Dispatcher(gateway, config, sleep=sleep), slept


def hook(receiver: Receiver, path: str = "/hook", **extra: Any) -> dict[str, Any]:
    return {"name": path.strip("/"), "webhook": receiver.url(path), "secret": SECRET, **extra}


def bodies(receiver: Receiver, path: str) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in receiver.at(path)]


def test_apprise_json_target_gets_a_pending_request(
    gateway: Gateway, clock: FakeClock, receiver: Receiver
) -> None:
    d, _ = dispatcher(gateway, clock, [
        {"name": "team", "apprise": f"json://127.0.0.1:{receiver.port}/apprise",
         "groups": ["tech-lead"]},
    ])
    rid = gateway.submit({"action": "task.restart", "args": {"svc": "api"}}, BOT).request.id
    assert d.drain() == 1
    [got] = bodies(receiver, "/apprise")
    assert "Approval needed" in got["title"] and "task.restart" in got["title"]
    message = got["message"]
    for part in ("task.restart", "Agent: bot", "Risk: low", "Deadline: ",
                 f"https://interlock.example/requests/{rid}", "tech-lead"):
        assert part in message, part
    assert d.drain() == 0
    assert len(receiver.at("/apprise")) == 1


def test_webhook_is_signed_and_verifies(
    gateway: Gateway, clock: FakeClock, receiver: Receiver
) -> None:
    d, _ = dispatcher(gateway, clock, [hook(receiver)])
    rid = gateway.submit({"action": "task.restart"}, BOT).request.id
    d.drain()
    [got] = receiver.at("/hook")
    ts, sig = got.headers[TIMESTAMP_HEADER], got.headers[SIGNATURE_HEADER]
    assert sig.startswith("v1=")
    assert verify(SECRET, ts, got.body, sig, now=clock.now())
    assert not verify(SECRET, ts, got.body + b" ", sig, now=clock.now())
    assert not verify("another secret", ts, got.body, sig, now=clock.now())
    assert not verify(SECRET, ts, got.body, sig, now=clock.now() + 301)
    assert verify(SECRET, ts, got.body, f"v1=00, {sig}", now=clock.now())
    doc = json.loads(got.body)
    assert doc["type"] == "request.approval_needed"
    notice = doc["notice"]
    assert notice["request_id"] == rid and notice["agent"] == "bot"
    assert notice["action"] == "task.restart" and notice["risk"] == "low"
    assert notice["deadline"] == clock.now() + 600
    assert notice["link"] == f"https://interlock.example/requests/{rid}"


def test_a_receiver_failing_twice_gets_exactly_one_delivery(
    gateway: Gateway, clock: FakeClock, receiver: Receiver
) -> None:
    receiver.plan = [500, 503]
    d, slept = dispatcher(gateway, clock, [hook(receiver)],
                          retry={"attempts": 5, "first": "2s"})
    gateway.submit({"action": "task.restart"}, BOT)
    assert d.drain() == 1
    assert slept == [2.0, 4.0]  # exponential backoff, skipped by the fake clock
    assert len(receiver.at("/hook")) == 3
    [row] = d.ledger.all()
    assert (row.status, row.attempts) == ("delivered", 3)
    assert d.drain() == 0 and d.tick() == 0
    ids = {json.loads(r.body)["id"] for r in receiver.at("/hook")}
    assert len(ids) == 1


def test_delivery_is_given_up_after_its_attempts(
    gateway: Gateway, clock: FakeClock, receiver: Receiver
) -> None:
    receiver.plan = [500] * 10
    d, _ = dispatcher(gateway, clock, [hook(receiver)], retry={"attempts": 3})
    gateway.submit({"action": "task.restart"}, BOT)
    assert d.drain() == 0
    [row] = d.ledger.all()
    assert (row.status, row.attempts) == ("failed", 3)
    assert "500" in (row.error or "")


def test_no_notification_for_an_allowed_action(
    gateway: Gateway, clock: FakeClock, receiver: Receiver
) -> None:
    d, _ = dispatcher(gateway, clock, [hook(receiver)])
    submitted = gateway.submit({"action": "read_logs"}, BOT)
    assert submitted.request.state is State.ALLOWED
    assert d.drain() == 0
    assert receiver.got == []


def test_expiry_is_announced(gateway: Gateway, clock: FakeClock, receiver: Receiver) -> None:
    d, _ = dispatcher(gateway, clock, [hook(receiver)])
    rid = gateway.submit({"action": "task.restart"}, BOT).request.id
    d.drain()
    clock.advance(601)
    assert gateway.store.sweep().expired == [rid]
    d.drain()
    kinds = [b["notice"]["kind"] for b in bodies(receiver, "/hook")]
    assert kinds == ["approval_needed", "expired"]
    expired = bodies(receiver, "/hook")[1]["notice"]
    assert expired["deadline"] is None and "timed out" in expired["reason"]


def test_routing_per_group_and_escalation(
    gateway: Gateway, clock: FakeClock, receiver: Receiver
) -> None:
    d, _ = dispatcher(gateway, clock, [
        hook(receiver, "/finance", groups=["finance"]),
        hook(receiver, "/managers", groups=["engineering-manager"]),
        hook(receiver, "/leads", groups=["tech-lead"]),
        hook(receiver, "/everyone"),
    ])
    rid = gateway.submit({"action": "send_payment", "amount": 5}, BOT).request.id
    d.drain()
    assert [b["notice"]["kind"] for b in bodies(receiver, "/finance")] == ["approval_needed"]
    assert receiver.at("/managers") == [] and receiver.at("/leads") == []
    clock.advance(3601)
    assert gateway.store.sweep().escalated == [rid]
    d.drain()
    [escalated] = bodies(receiver, "/managers")
    assert escalated["notice"]["kind"] == "escalated"
    assert escalated["notice"]["approvers"] == ["finance", "engineering-manager"]
    assert len(receiver.at("/finance")) == 2 and receiver.at("/leads") == []
    assert len(receiver.at("/everyone")) == 2


def test_a_request_decided_before_dispatch_pages_nobody(
    gateway: Gateway, clock: FakeClock, receiver: Receiver
) -> None:
    d, _ = dispatcher(gateway, clock, [hook(receiver)])
    rid = gateway.submit({"action": "task.restart"}, BOT).request.id
    lead = Principal(role="reviewer", name="ann", groups=("tech-lead",))
    gateway.decide(rid, lead, "approve")
    assert d.drain() == 0
    assert receiver.got == []


def test_two_dispatchers_queue_each_event_once(
    gateway: Gateway, clock: FakeClock, receiver: Receiver
) -> None:
    first, _ = dispatcher(gateway, clock, [hook(receiver)])
    second, _ = dispatcher(gateway, clock, [hook(receiver)])
    gateway.submit({"action": "task.restart"}, BOT)
    assert first.collect() == 1
    assert second.collect() == 0
    first.deliver()
    second.deliver()
    assert len(receiver.at("/hook")) == 1


def test_old_events_are_not_announced_on_a_first_start(
    gateway: Gateway, clock: FakeClock, receiver: Receiver
) -> None:
    gateway.submit({"action": "send_payment"}, BOT)
    clock.advance(120)
    d, _ = dispatcher(gateway, clock, [hook(receiver)], max_age="1m")
    assert d.drain() == 0
    assert receiver.got == []


def test_deliveries_are_rows_of_the_store_outbox(
    gateway: Gateway, clock: FakeClock, receiver: Receiver
) -> None:
    d, _ = dispatcher(gateway, clock, [hook(receiver)])
    rid = gateway.submit({"action": "task.restart"}, BOT).request.id
    d.drain()
    o = t.outbox.c
    with gateway.store.engine.connect() as conn:
        rows = conn.execute(sa.select(o.event, o.target, o.kind, o.status, o.payload)).all()
        position = conn.execute(sa.select(t.outbox_cursor.c.seq)).scalar_one()
        tables = set(sa.inspect(conn).get_table_names())
    [(event, target, kind, status, payload)] = rows
    assert (target, kind, status) == ("hook", "approval_needed", "delivered")
    assert json.loads(payload)["request_id"] == rid and event == json.loads(payload)["id"]
    assert position == list(gateway.store.audit_entries())[-1].seq
    assert not tables & {"notify_deliveries", "notify_cursor"}


def test_a_position_set_back_sends_nothing_twice(
    gateway: Gateway, clock: FakeClock, receiver: Receiver
) -> None:
    d, _ = dispatcher(gateway, clock, [hook(receiver)])
    gateway.submit({"action": "task.restart"}, BOT)
    assert d.drain() == 1
    with gateway.store.engine.begin() as conn:
        conn.execute(t.outbox_cursor.update().values(seq=0))
    assert d.drain() == 0
    assert len(receiver.at("/hook")) == 1
    assert d.ledger.position() == list(gateway.store.audit_entries())[-1].seq


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
def test_the_poll_searches_only_queued_rows(store: Store) -> None:
    for query in (DUE.params(now=5.0, limit=50), NEXT_DUE):
        sql = str(query.compile(dialect=store.engine.dialect,
                                compile_kwargs={"literal_binds": True}))
        with store.engine.connect() as conn:
            plan = [str(row[3]) for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)]
        assert plan == [plan[0]] and "USING INDEX ix_outbox_queued" in plan[0], plan
