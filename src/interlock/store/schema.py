"""The tables of the store, as SQLAlchemy Core metadata shared by both backends.

JSON is kept as canonical JSON text, so both backends store and hash the same bytes.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

_Time = sa.Float(precision=53)

requests = sa.Table(
    "requests",
    metadata,
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

# Only requests that carry a key or a batch have entries in these (most carry neither).
_has_key = requests.c.idempotency_key.is_not(None)
_in_batch = requests.c.batch_id.is_not(None)
sa.Index("uq_requests_idempotency", requests.c.agent, requests.c.idempotency_key, unique=True,
         sqlite_where=_has_key, postgresql_where=_has_key)
sa.Index("ix_requests_agent_batch", requests.c.agent, requests.c.batch_id,
         sqlite_where=_in_batch, postgresql_where=_in_batch)

def in_state(state: str) -> sa.ColumnElement[bool]:
    """`state = '<state>'` with the value inline, so planners can use the partial indexes."""
    if not state.isidentifier():
        raise ValueError(state)
    return requests.c.state == sa.literal_column(f"'{state}'")


# Partial indexes: each holds only the rows one query looks for (the sweeper's due requests,
# the facts' successes and failures), so a state change touches few index pages.
def _partial(name: str, state: str, *columns: str) -> sa.Index:
    where = in_state(state)
    return sa.Index(name, *(requests.c[c] for c in columns), sqlite_where=where,
                    postgresql_where=where)


_partial("ix_requests_pending_deadline", "pending", "deadline")
_partial("ix_requests_pending_agent", "pending", "agent")
_partial("ix_requests_executing_lease", "executing", "lease_expires_at")
_partial("ix_requests_succeeded", "succeeded", "agent", "action_name", "environment")
_partial("ix_requests_failed", "failed", "agent", "run_id", "action_name")

votes = sa.Table(
    "votes",
    metadata,
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
    sa.Index("ix_votes_request", "request_id", "reviewer"),
)

audit = sa.Table(
    "audit",
    metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=False),
    # Only what queries filter on is a column of its own; everything else lives in `entry`,
    # the canonical JSON that is hashed (verify checks these columns against it).
    sa.Column("event", sa.String(64), nullable=False),
    sa.Column("request_id", sa.String(32), nullable=True),
    sa.Column("entry", sa.Text, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Index("ix_audit_request", "request_id", "seq"),
)

#: One row: the newest entry's seq and hash, locked by every writer to keep the chain linear.
audit_head = sa.Table(
    "audit_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

agents = sa.Table(
    "agents",
    metadata,
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

#: Who an agent's successful actions reached; `novel_recipients` reads it by primary key.
recipients = sa.Table(
    "recipients",
    metadata,
    sa.Column("agent", sa.String(200), primary_key=True),
    sa.Column("recipient", sa.String(400), primary_key=True),
    sa.Column("first_at", _Time, nullable=False),
)

tokens = sa.Table(
    "tokens",
    metadata,
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

feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(32), sa.ForeignKey("requests.id"), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("reviewer", sa.String(200), nullable=False),
    sa.Column("value", sa.String(32), nullable=False),
    sa.Column("note", sa.Text, nullable=True),
    sa.Column("correction", sa.Text, nullable=True),
    sa.Column("at", _Time, nullable=False),
    sa.Index("ix_feedback_request", "request_id"),
)

#: Decision memory: what reviewers approved and asked to remember (SPEC §3.6).
grants = sa.Table(
    "grants",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("agent", sa.String(200), nullable=False),
    sa.Column("action_name", sa.String(200), nullable=False),
    sa.Column("match", sa.Text, nullable=False),
    sa.Column("reviewer", sa.String(200), nullable=False),
    sa.Column("created_at", _Time, nullable=False),
    sa.Column("expires_at", _Time, nullable=True),
    sa.Column("revoked_at", _Time, nullable=True),
    sa.Index("ix_grants_agent_action", "agent", "action_name"),
)

#: The kill switch: `scope` is an agent name, or `*` for every agent.
pauses = sa.Table(
    "pauses",
    metadata,
    sa.Column("scope", sa.String(200), primary_key=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("at", _Time, nullable=False),
)

#: Side effects owed after commit, one row per notice and target: the notification dispatcher
#: queues them from the audit trail and sends each at most once (docs/notifications.md).
outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event", sa.String(64), nullable=False),  # the notice's id, `audit:SEQ`
    sa.Column("target", sa.String(200), nullable=False),  # a target's name in the config
    sa.Column("kind", sa.String(64), nullable=False),  # the notice's kind
    sa.Column("payload", sa.Text, nullable=False),  # the notice, as JSON
    sa.Column("status", sa.String(16), nullable=False),  # queued, sending, delivered, failed
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_at", _Time, nullable=False),  # when the next attempt is due
    sa.Column("created_at", _Time, nullable=False),
    sa.Column("delivered_at", _Time, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.UniqueConstraint("event", "target", name="uq_outbox_event_target"),
)

#: The dispatcher's poll reads only what waits to be sent, so only that is indexed.
OUTBOX_QUEUED = outbox.c.status == sa.literal_column("'queued'")
sa.Index("ix_outbox_queued", outbox.c.next_at, sqlite_where=OUTBOX_QUEUED,
         postgresql_where=OUTBOX_QUEUED)

#: One row: the audit sequence number the dispatcher has queued notices up to.
outbox_cursor = sa.Table(
    "outbox_cursor",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), nullable=False),
)
