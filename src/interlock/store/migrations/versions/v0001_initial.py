"""Revision 0001: every table of the first release, and the guard on the audit table.

Creates the tables from `interlock.store.schema` as they stood at this revision.
"""

from __future__ import annotations

from alembic import op

from interlock.store import schema

revision = "0001"
down_revision: str | None = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    schema.metadata.create_all(bind)
    from interlock.store.backends import backend_for_dialect

    for statement in backend_for_dialect(bind.dialect.name).audit_guard:
        op.execute(statement)
    op.execute(schema.audit_head.insert().values(id=1, seq=0, hash="0" * 64))


def downgrade() -> None:
    raise NotImplementedError("interlock never drops an audit trail")
