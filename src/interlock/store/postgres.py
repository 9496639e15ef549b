"""What is PostgreSQL's own: psycopg 3 URLs, a connection pool, and the audit guard triggers.

Several interlock processes may share the database; row locks and the chain head keep it sound.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

#: Appends entries to the chain inside the database: the head is locked, read and moved in
#: the same statement that inserts, so no round trip happens while a writer holds it. The
#: entries come packed into one text (`interlock.store.audit.packed`: one text parameter
#: costs the driver a fraction of what three arrays do): per entry its event, request id
#: and body, the canonical JSON of the entry up to its last key, `"seq":`, which the seq
#: completes. The hashing is the same as `interlock.store.audit.chain`, which SQLite uses,
#: and which `verify` recomputes from the stored bytes. Added by revision 0003.
APPEND_PACKED_FUNCTION = """
CREATE OR REPLACE FUNCTION interlock_append_packed(packed text)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  s bigint;
  h text;
  prev text;
  e text;
  item text;
  f text[];
BEGIN
  SELECT seq, hash INTO s, h FROM audit_head WHERE id = 1 FOR UPDATE;
  FOREACH item IN ARRAY string_to_array(packed, chr(30)) LOOP
    f := string_to_array(item, chr(31));
    s := s + 1;
    e := f[3] || s::text || '}';
    prev := h;
    h := encode(sha256(convert_to(prev || e, 'UTF8')), 'hex');
    INSERT INTO audit (seq, event, request_id, entry, prev_hash, hash)
      VALUES (s, f[1], nullif(f[2], ''), e, prev, h);
  END LOOP;
  UPDATE audit_head SET seq = s, hash = h WHERE id = 1;
  RETURN s;
END $$
"""

#: The append of revisions 0001 and 0002, with the entries as three arrays, for processes
#: not yet upgraded: it packs them for `interlock_append_packed`. (PL/pgSQL resolves the
#: function it calls when called, so revision 0001 can create it before 0003 exists.)
APPEND_FUNCTION = """
CREATE OR REPLACE FUNCTION interlock_append(events text[], request_ids text[], bodies text[])
RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
  RETURN interlock_append_packed(array_to_string(ARRAY(
    SELECT events[i] || chr(31) || coalesce(request_ids[i], '') || chr(31) || bodies[i]
    FROM generate_subscripts(bodies, 1) AS i ORDER BY i), chr(30)));
END $$
"""

#: The audit table's guard (append-only triggers) and its append function.
AUDIT_GUARD = [
    "CREATE OR REPLACE FUNCTION interlock_audit_append_only() RETURNS trigger "
    "LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'the audit trail is append-only'; END $$",
    "CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit "
    "FOR EACH ROW EXECUTE FUNCTION interlock_audit_append_only()",
    "CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit "
    "FOR EACH STATEMENT EXECUTE FUNCTION interlock_audit_append_only()",
    APPEND_FUNCTION,
]

AUDIT_UNGUARD = [
    "ALTER TABLE audit DISABLE TRIGGER audit_append_only",
    "ALTER TABLE audit DISABLE TRIGGER audit_no_truncate",
]


def normalize_url(url: str) -> str:
    """Accept `postgresql://` and `postgres://` as users write them; use psycopg 3."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


class PostgresBackend:
    """PostgreSQL through psycopg 3 and SQLAlchemy's connection pool."""

    name = "postgresql"
    audit_guard = AUDIT_GUARD
    audit_unguard = AUDIT_UNGUARD
    #: psycopg pipelines the writes before commit into one round trip.
    pipeline = True
    #: Several writers at once, each on a pooled connection.
    single_writer = False
    #: Audit entries are chained by `interlock_append_packed` in the database, the driver's
    #: own SQL; its parameter is `interlock.store.audit.packed(entries)`.
    append = "SELECT interlock_append_packed(%(packed)s)"

    #: Taken in the migration transaction so two servers starting at once migrate once.
    migration_lock: str | None = "SELECT pg_advisory_xact_lock(7235114)"

    def create_engine(self, url: str, connect_args: dict[str, Any] | None = None) -> sa.Engine:
        return sa.create_engine(
            normalize_url(url),
            connect_args=connect_args or {},
            # Beside the 8 write connections of `interlock.store.pipelined`: 38 at most.
            pool_size=10,
            max_overflow=20,
            pool_pre_ping=False,
        )

    def write_lock(self) -> AbstractContextManager[Any]:
        # Writers from many processes meet in the database: row locks and the chain head.
        return contextlib.nullcontext()

    def try_write_lock(self) -> Callable[[], None] | None:
        return lambda: None

    def begin_now(self, conn: sa.Connection) -> sa.RootTransaction | None:
        return conn.begin()

    def insert_ignore(self, table: sa.Table) -> Any:
        return pg_insert(table).on_conflict_do_nothing()

    def insert(self, table: sa.Table) -> Any:
        return pg_insert(table)
