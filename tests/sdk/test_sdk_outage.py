"""Embedded mode on PostgreSQL when the database drops the gate's connections (a restart or a
failover): a gated action fails closed, a `fail_open` one runs and is journaled, and the
journal is audited once the database answers again. No stand-in: the server itself ends the
connections."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sdk_helpers import POLICY
from tests.server.servers import pg_schema, pg_terminate

from interlock import Action, Gate
from interlock.errors import StoreUnavailable
from interlock.store import State, open_store

pytestmark = pytest.mark.postgres


def test_dropped_connections_fail_closed_and_fail_open_runs_are_audited(
        tmp_path: Path) -> None:
    name = f"il_sdk_{uuid.uuid4().hex[:8]}"
    policy = tmp_path / "interlock.yaml"
    policy.write_text(POLICY)
    with pg_schema() as url:
        db = f"{url}&application_name={name}"
        gate = Gate.from_policy(policy, db=db, channel="web", agent="bot",
                                state_dir=tmp_path / "state", poll=0.01)
        try:
            assert gate.run(Action(action="read_report", args={"day": "sun"}),
                            lambda day: day) == "sun"  # connections are open now
            ran: list[str] = []

            assert pg_terminate(name) >= 1
            assert gate.run(Action(action="read_report", args={"day": "mon"}),
                            lambda day: ran.append(day) or day) == "mon"
            assert [r.status for r in gate.journal.runs()] == ["succeeded"]
            # the database answers again: this call reconnects and audits the journal
            assert gate.run(Action(action="read_other", args={}), lambda: "ok") == "ok"

            assert pg_terminate(name) >= 1
            with pytest.raises(StoreUnavailable, match="fail closed"):
                gate.run(Action(action="send_payment", capabilities=["payment"],
                                args={"amount": 1}), lambda amount: ran.append("paid"))
            assert ran == ["mon"]
        finally:
            gate.close()
        store = open_store(db)
        try:
            stored = {r.action_name: r for r in store.list_requests(agent="bot")}
            assert stored["read_report"].state is State.SUCCEEDED
            assert "ran fail-open" in (stored["read_report"].reason or "")
            assert "send_payment" not in stored
            assert store.verify().ok
        finally:
            store.close()
