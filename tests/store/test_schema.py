"""Migrations and the rest of the contract: facts for the policy, tokens, agents, pauses, feedback.

An empty database is migrated on open; a newer one is refused; an older one waits for upgrade.
"""

from __future__ import annotations

import pytest
from store_helpers import LEAD, result, submit
from store_support import DB

from interlock.cli import main
from interlock.errors import BadInput, Conflict, NotFound
from interlock.policy.records import Decision, Level
from interlock.store import SchemaOutdated, SchemaTooNew, State, Store
from interlock.store.migrate import head


def test_empty_database_is_migrated_on_open(db: DB, store: Store) -> None:
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == head()
    assert main(["db", "upgrade", "--db", db.cli_url]) == 0


def test_newer_schema_is_refused(db: DB, store: Store) -> None:
    db.owner_exec("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(SchemaTooNew):
        db.open()
    assert main(["db", "upgrade", "--db", db.cli_url]) == 1


def test_older_schema_waits_for_upgrade(
    db: DB, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from interlock.store import migrate

    newer = f"{int(head()) + 1:04d}"  # a revision this interlock would know, one ahead
    known = migrate.known()
    monkeypatch.setattr(migrate, "head", lambda: newer)
    monkeypatch.setattr(migrate, "known", lambda: {*known, newer})
    with pytest.raises(SchemaOutdated) as err:
        db.open()
    assert "interlock db upgrade" in err.value.message


def test_facts(store: Store) -> None:
    kw = {"agent": "mailer", "action": "send_email", "environment": "production",
          "run_id": "run-1"}
    first = store.facts(**kw, recipients=["a@x.org"])
    assert first.novel and first.novel_recipients == ("a@x.org",) and first.failures == 0
    for status in ("failed", "failed", "succeeded"):
        r = store.submit(agent="mailer", result=result(Decision.ALLOW), action={
            "action": "send_email", "environment": "production", "recipients": ["a@x.org"],
            "context": {"run_id": "run-1"}})
        store.claim(r.id, agent="mailer", lease=60)
        store.outcome(r.id, agent="mailer", status=status)  # type: ignore[arg-type]
    later = store.facts(**kw, recipients=["a@x.org", "b@x.org"])
    assert not later.novel
    assert later.novel_recipients == ("b@x.org",)
    assert later.failures == 2
    assert store.facts(**{**kw, "environment": "staging"}).novel
    assert store.facts(**{**kw, "run_id": "run-2"}).failures == 0


def test_tokens(store: Store) -> None:
    token, secret = store.create_token(kind="reviewer", name="lena", groups=["tech-lead"],
                                       actor="admin:root", expires_at=store.clock.now() + 60)
    assert token.id in {t.id for t in store.tokens()}
    assert store.token_by_secret(secret) == token
    assert store.token_by_secret("il_wrong") is None
    store.revoke_token(token.id, actor="admin:root")
    assert store.token_by_secret(secret) is None
    with pytest.raises(NotFound):
        store.revoke_token(token.id, actor="admin:root")
    with store.engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT secret_hash FROM tokens").scalar_one()
    assert secret not in stored
    assert [e.event for e in store.audit_entries()] == ["token.created", "token.revoked"]
    with pytest.raises(BadInput, match="interlock's own agent"):
        store.create_token(kind="agent", name="interlock", actor="admin:root")


def test_pause_agents_and_annotations(store: Store) -> None:
    store.pause(agent=None, reason="incident 42", actor="admin:root")
    store.pause(agent="ops-agent", reason="runaway loop", actor="admin:root")
    assert store.paused("ops-agent") == "runaway loop"
    assert store.paused("other") == "incident 42"
    store.unpause(agent=None, actor="admin:root")
    assert store.paused("other") is None
    assert store.facts(agent="ops-agent", action="x", environment=None,
                       run_id=None).paused == "runaway loop"

    store.set_level("ops-agent", Level.AUTONOMOUS, actor="admin:root", pinned=True)
    agent = store.agent("ops-agent")
    assert agent is not None and agent.level == "autonomous" and agent.pinned

    r = submit(store)
    with pytest.raises(Conflict):
        store.review(r.id, reviewer=LEAD, verdict="ok")
    store.vote(r.id, reviewer=LEAD, verdict="approve")
    store.claim(r.id, agent="ops-agent", lease=60)
    assert store.outcome(r.id, agent="ops-agent", status="succeeded").state is State.SUCCEEDED
    store.review(r.id, reviewer=LEAD, verdict="reversed", note="rolled back")
    store.rate(r.id, reviewer=LEAD, rating="incorrect", correction={"decision": "deny"})
    assert [(a.kind, a.value) for a in store.annotations(r.id)] == [
        ("review", "reversed"), ("rating", "incorrect")]
    agent = store.agent("ops-agent")
    assert agent is not None and agent.reversals == 1 and agent.approvals == 1


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_facts_and_sweeper_use_indexes(store: Store) -> None:
    import sqlalchemy as sa

    from interlock.store import schema as t

    r = t.requests.c
    queries = [
        sa.select(r.id).where(t.in_state("pending"), r.deadline <= 5),
        sa.select(r.id).where(t.in_state("executing"), r.lease_expires_at <= 5),
        sa.select(r.id).where(r.agent == "a", r.action_name == "x", r.environment == "p",
                              t.in_state("succeeded")),
        sa.select(r.id).where(r.agent == "a", r.run_id == "r", r.action_name == "x",
                              t.in_state("failed")),
        sa.select(r.id).where(r.agent == "a", t.in_state("pending")),
    ]
    with store.engine.connect() as conn:
        for q in queries:
            sql = str(q.compile(dialect=store.engine.dialect,
                                compile_kwargs={"literal_binds": True}))
            plan = " ".join(str(row[3]) for row in conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN " + sql))
            assert "USING INDEX" in plan or "USING COVERING INDEX" in plan, plan


def test_unreachable_database_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    url = "sqlite:////nonexistent-dir/interlock.db"
    assert main(["audit", "verify", "--db", url]) == 1
    assert main(["db", "upgrade", "--db", url]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2, err
    assert err[0].startswith("interlock: no database at `/nonexistent-dir/interlock.db`")
    assert err[1].startswith("interlock: cannot upgrade the database")


def test_a_failed_migration_leaves_nothing_behind(
    db: DB, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlalchemy as sa

    from interlock.store import backends

    real = backends.backend_for_dialect

    def broken(name: str) -> backends.Backend:
        backend = real(name)
        backend.audit_guard = [*backend.audit_guard, "THIS IS NOT SQL"]
        return backend

    monkeypatch.setattr(backends, "backend_for_dialect", broken)
    with pytest.raises(Exception):  # noqa: B017 - whatever the driver raises
        db.open()
    monkeypatch.undo()
    engine = backends.backend_for_url(db.url).create_engine(db.url, db.connect_args)
    try:
        with engine.connect() as conn:
            assert not sa.inspect(conn).get_table_names()  # tables and version row rolled back
    finally:
        engine.dispose()
    db.open().close()  # and the next start migrates cleanly


def test_public_names_are_complete_and_sorted() -> None:
    import interlock.store as store_pkg

    exported = [n for n in dir(store_pkg) if not n.startswith("_") and n[0].isupper()]
    # ruff (RUF022) keeps __all__ sorted; here: no duplicates, and every name resolves
    assert len(set(store_pkg.__all__)) == len(store_pkg.__all__)
    assert all(hasattr(store_pkg, n) for n in store_pkg.__all__)
    records = {"Admission", "Agent", "AgentPaused", "Annotation", "AuditEntry", "Claim",
               "Request", "Reviewer", "State", "Store", "SweepReport", "Token", "VerifyReport",
               "Vote"}
    assert records <= set(store_pkg.__all__) and records <= set(exported)
