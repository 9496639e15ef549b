"""Revision 0003: PostgreSQL's audit append takes its entries packed into one text.

`interlock_append_packed(text)` now extends the chain; `interlock_append(text[], text[],
text[])`, which processes not yet upgraded go on calling, packs its arrays for it. SQLite
chains in Python: nothing to do.
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        from interlock.store.postgres import APPEND_FUNCTION, APPEND_PACKED_FUNCTION

        op.execute(APPEND_PACKED_FUNCTION)
        op.execute(APPEND_FUNCTION)


def downgrade() -> None:
    raise NotImplementedError("interlock never drops an audit trail")
