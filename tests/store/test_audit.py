"""The audit chain: what is an entry, triggers refuse changes, tampering is found at its row.

Tampering is done as a database owner would: the guard triggers dropped or disabled first.
"""

from __future__ import annotations

import itertools
import json

import pytest
import sqlalchemy as sa
from store_helpers import LEAD, approved, result, submit
from store_support import DB

from interlock.cli import main
from interlock.store import Store


def _history(store: Store) -> None:
    for _ in range(3):
        r = approved(store)
        store.claim(r.id, agent="ops-agent", lease=60)
        store.outcome(r.id, agent="ops-agent", status="succeeded", summary="ok")
    store.record("admin:root", "policy.loaded", {"hash": "p" * 64})


def test_chain_is_gap_free_and_linked(store: Store) -> None:
    _history(store)
    entries = list(store.audit_entries())
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(entries))
    assert entries[-1].event == "policy.loaded"
    report = store.verify()
    assert report.ok and report.checked == len(entries)
    assert report.head_hash == store.audit_head()[1]
    votes = [e for e in entries if e.event == "vote"]
    assert votes and all(e.digest is not None for e in votes)


def test_database_refuses_update_and_delete(store: Store) -> None:
    _history(store)
    for sql in ("UPDATE audit SET event = 'x' WHERE seq = 1", "DELETE FROM audit WHERE seq = 1"):
        with pytest.raises(sa.exc.DBAPIError), store.engine.begin() as conn:
            conn.exec_driver_sql(sql)
    assert store.verify().ok


TAMPER = {
    "edit-entry": ["UPDATE audit SET entry = replace(entry, 'approve', 'deny') WHERE seq = 4"],
    "edit-column": ["UPDATE audit SET event = 'vote' WHERE seq = 4"],
    "delete": ["DELETE FROM audit WHERE seq = 4"],
    "swap": ["UPDATE audit SET seq = -1 WHERE seq = 4",
             "UPDATE audit SET seq = 4 WHERE seq = 5",
             "UPDATE audit SET seq = 5 WHERE seq = -1"],
}


@pytest.mark.parametrize("how", sorted(TAMPER))
def test_tampering_is_found_at_its_row(db: DB, store: Store, how: str) -> None:
    _history(store)
    assert store.verify().ok
    db.owner_exec(*db.unguard, *TAMPER[how])
    report = store.verify()
    assert not report.ok
    assert report.bad_seq == 4, report
    assert main(["audit", "verify", "--db", db.cli_url]) == 1


def test_anchor_finds_removal_of_newest_entries(db: DB, store: Store) -> None:
    _history(store)
    seq, anchor = store.audit_head()
    _history(store)
    assert store.verify(anchor=anchor).ok
    # remove the newest entries and make the head row agree, as a careful attacker would
    new_seq = seq - 2
    with store.engine.connect() as conn:
        prev = conn.exec_driver_sql(f"SELECT hash FROM audit WHERE seq = {new_seq}").scalar_one()
    db.owner_exec(*db.unguard, f"DELETE FROM audit WHERE seq > {new_seq}",
                  f"UPDATE audit_head SET seq = {new_seq}, hash = '{prev}'")
    assert store.verify().ok  # without the anchor the shorter chain is self-consistent
    report = store.verify(anchor=anchor)
    assert not report.ok and "anchor" in (report.problem or "")
    assert main(["audit", "verify", "--db", db.cli_url, "--anchor", anchor]) == 1


def test_head_row_reveals_a_careless_truncation(db: DB, store: Store) -> None:
    _history(store)
    seq, _ = store.audit_head()
    db.owner_exec(*db.unguard, f"DELETE FROM audit WHERE seq = {seq}")
    report = store.verify()
    assert not report.ok and report.bad_seq == seq


def test_cli_verify_anchor_export(db: DB, store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    _history(store)
    assert main(["audit", "anchor", "--db", db.cli_url]) == 0
    anchor = capsys.readouterr().out.strip()
    assert anchor == store.audit_head()[1]
    assert main(["audit", "verify", "--db", db.cli_url, "--anchor", anchor]) == 0
    assert capsys.readouterr().out.startswith("ok: ")
    assert main(["audit", "export", "--db", db.cli_url, "--format", "jsonl"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == store.audit_head()[0]
    first = json.loads(lines[0])
    assert first["entry"]["seq"] == 1 and first["prev_hash"] == "0" * 64


def test_timeline_explains_state(store: Store) -> None:
    r = submit(store)
    store.vote(r.id, reviewer=LEAD, verdict="deny", note="no")
    events = [e.event for e in store.timeline(r.id)]
    assert events == ["submitted", "state.pending", "vote", "state.denied"]


def test_unicode_and_escapes_hash_the_same_everywhere(store: Store) -> None:
    store.record("reviewer:zoë", "note", {"text": 'déjà vu 🚀 "quoted" \\ back\nline\t\u0001'})
    r = store.submit(agent="agent-ü", action={"action": "send_email", "args": {"to": "名前"}},
                     result=result())
    store.vote(r.id, reviewer=LEAD, verdict="deny", note="nein — zu riskant")
    assert store.verify().ok
    first = next(iter(store.audit_entries()))
    assert first.actor == "reviewer:zoë" and first.data["text"].startswith("déjà vu 🚀")


def test_packed_entries_keep_their_fields_apart() -> None:
    """PostgreSQL's append takes the entries as one text; no event or request id may hold
    the separators (canonical JSON escapes control characters, so bodies never do)."""
    from interlock.store import audit

    def entry(event: str, rid: str | None, note: str) -> audit.Pending:
        return audit.Pending(at=1.0, actor="agent:bot", event=event, request_id=rid,
                             digest=None, data={"note": note})

    pending = [entry("vote", "01ABC", "line\x1eone\x1f"), entry("policy.loaded", None, "")]
    fields = [item.split(audit.FIELD_SEP) for item in audit.packed(pending).split(
        audit.ENTRY_SEP)]
    assert [f[:2] for f in fields] == [["vote", "01ABC"], ["policy.loaded", ""]]
    assert [f[2] for f in fields] == audit.bodies(pending)
    assert "\\u001e" in fields[0][2]  # the note's control characters, escaped
    with pytest.raises(ValueError, match="separator"):
        audit.packed([entry("vote\x1f", "01ABC", "")])
