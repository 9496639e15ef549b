"""Revision 0001: every table of the first release, and the guard on the audit table.

The tables are written out as they stood at this revision, so a later change to
`interlock.store.schema` never changes what this revision creates: later revisions do.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels = None
depends_on = None

_Time = sa.Float(precision=53)
_Seq = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def _partial(name: str, columns: list[str], where: str, *, unique: bool = False) -> None:
    """A partial index on `requests`, with the same condition on both backends."""
    op.create_index(name, "requests", columns, unique=unique, sqlite_where=sa.text(where),
                    postgresql_where=sa.text(where))


def upgrade() -> None:
    op.create_table(
        "requests",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("agent", sa.String(200), nullable=False),
        sa.Column("action_name", sa.String(200), nullable=False),
        sa.Column("environment", sa.String(200), nullable=True),
        sa.Column("run_id", sa.String(200), nullable=True),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("body_hash", sa.String(64), nullable=False),
        sa.Column("result", sa.Text, nullable=False),
        sa.Column("policy_hash", sa.String(64), nullable=False),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("risk", sa.String(16), nullable=False),
        sa.Column("decision", sa.String(24), nullable=False),
        sa.Column("requirements", sa.Text, nullable=True),
        sa.Column("progress", sa.Text, nullable=False),
        sa.Column("round", sa.Integer, nullable=False, server_default="0"),
        sa.Column("final_args", sa.Text, nullable=False),
        sa.Column("edited", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("checkpoint", sa.Text, nullable=True),
        sa.Column("idempotency_key", sa.String(200), nullable=True),
        sa.Column("batch_id", sa.String(200), nullable=True),
        sa.Column("revision_of", sa.String(32), sa.ForeignKey("requests.id"), nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("created_at", _Time, nullable=False),
        sa.Column("updated_at", _Time, nullable=False),
        sa.Column("decided_at", _Time, nullable=True),
        sa.Column("deadline", _Time, nullable=True),
        sa.Column("ttl_expires_at", _Time, nullable=True),
        sa.Column("lease_expires_at", _Time, nullable=True),
    )
    _partial("uq_requests_idempotency", ["agent", "idempotency_key"],
             "idempotency_key IS NOT NULL", unique=True)
    _partial("ix_requests_agent_batch", ["agent", "batch_id"], "batch_id IS NOT NULL")
    _partial("ix_requests_pending_deadline", ["deadline"], "state = 'pending'")
    _partial("ix_requests_pending_agent", ["agent"], "state = 'pending'")
    _partial("ix_requests_executing_lease", ["lease_expires_at"], "state = 'executing'")
    _partial("ix_requests_succeeded", ["agent", "action_name", "environment"],
             "state = 'succeeded'")
    _partial("ix_requests_failed", ["agent", "run_id", "action_name"], "state = 'failed'")

    op.create_table(
        "votes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(32), sa.ForeignKey("requests.id"), nullable=False),
        sa.Column("reviewer", sa.String(200), nullable=False),
        sa.Column("verdict", sa.String(24), nullable=False),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("args", sa.Text, nullable=True),
        sa.Column("counted", sa.Text, nullable=False),
        sa.Column("confirmed", sa.Boolean, nullable=False),
        sa.Column("round", sa.Integer, nullable=False),
        sa.Column("at", _Time, nullable=False),
    )
    op.create_index("ix_votes_request", "votes", ["request_id", "reviewer"])

    op.create_table(
        "audit",
        sa.Column("seq", _Seq, primary_key=True, autoincrement=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("request_id", sa.String(32), nullable=True),
        sa.Column("entry", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_audit_request", "audit", ["request_id", "seq"])

    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", _Seq, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )

    op.create_table(
        "agents",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("level", sa.String(24), nullable=True),
        sa.Column("pinned", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("approvals", sa.Integer, nullable=False, server_default="0"),
        sa.Column("clean_approvals", sa.Integer, nullable=False, server_default="0"),
        sa.Column("denials", sa.Integer, nullable=False, server_default="0"),
        sa.Column("reversals", sa.Integer, nullable=False, server_default="0"),
        sa.Column("failures_after_approval", sa.Integer, nullable=False, server_default="0"),
        sa.Column("updated_at", _Time, nullable=False),
    )

    op.create_table(
        "recipients",
        sa.Column("agent", sa.String(200), primary_key=True),
        sa.Column("recipient", sa.String(400), primary_key=True),
        sa.Column("first_at", _Time, nullable=False),
    )

    op.create_table(
        "tokens",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("groups", sa.Text, nullable=False),
        sa.Column("environment", sa.String(200), nullable=True),
        sa.Column("actions", sa.Text, nullable=True),
        sa.Column("secret_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", _Time, nullable=False),
        sa.Column("expires_at", _Time, nullable=True),
        sa.Column("revoked_at", _Time, nullable=True),
    )

    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(32), sa.ForeignKey("requests.id"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("reviewer", sa.String(200), nullable=False),
        sa.Column("value", sa.String(32), nullable=False),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("correction", sa.Text, nullable=True),
        sa.Column("at", _Time, nullable=False),
    )
    op.create_index("ix_feedback_request", "feedback", ["request_id"])

    op.create_table(
        "grants",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("agent", sa.String(200), nullable=False),
        sa.Column("action_name", sa.String(200), nullable=False),
        sa.Column("match", sa.Text, nullable=False),
        sa.Column("reviewer", sa.String(200), nullable=False),
        sa.Column("created_at", _Time, nullable=False),
        sa.Column("expires_at", _Time, nullable=True),
        sa.Column("revoked_at", _Time, nullable=True),
    )
    op.create_index("ix_grants_agent_action", "grants", ["agent", "action_name"])

    op.create_table(
        "pauses",
        sa.Column("scope", sa.String(200), primary_key=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("at", _Time, nullable=False),
    )

    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created_at", _Time, nullable=False),
        sa.Column("delivered_at", _Time, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_index("ix_outbox_undelivered", "outbox", ["delivered_at", "id"])

    # The guard (append-only triggers, and on PostgreSQL the append function) belongs to
    # the backend module, which keeps its statements beside the code that relies on them.
    from interlock.store.backends import backend_for_dialect

    for statement in backend_for_dialect(op.get_bind().dialect.name).audit_guard:
        op.execute(statement)
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": "0" * 64}])


def downgrade() -> None:
    raise NotImplementedError("interlock never drops an audit trail")
