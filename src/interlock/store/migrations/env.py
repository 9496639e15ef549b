"""Alembic's entry point: migrate on the connection interlock passes in, in its transaction.

No alembic.ini and no logging setup: interlock drives Alembic from `interlock.store.migrate`.
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, transactional_ddl=True, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
