"""Schema migrations driven from code: upgrade, where the database stands, refuse the unknown.

Every upgrade runs in one transaction with the version row Alembic records, under a lock.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from interlock.errors import BadInput, StoreUnavailable
from interlock.store.backends import Backend


class SchemaTooNew(StoreUnavailable):
    """The database was migrated by a newer interlock than this one."""

    code = "schema_too_new"


class SchemaOutdated(StoreUnavailable):
    """The database needs `interlock db upgrade` before this interlock can use it."""

    code = "schema_outdated"


def _config(connection: sa.Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", "interlock.store:migrations")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    """The newest revision this interlock knows."""
    rev = ScriptDirectory.from_config(_config()).get_current_head()
    assert rev is not None
    return rev


def known() -> set[str]:
    """Every revision this interlock knows."""
    return {r.revision for r in ScriptDirectory.from_config(_config()).walk_revisions()}


def current(connection: sa.Connection) -> str | None:
    """The revision the database is at (None: never migrated)."""
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(
    engine: sa.Engine, backend: Backend, *, to: str | None = None
) -> tuple[str | None, str]:
    """Bring the schema to head (or to the revision `to`) in one transaction; returns
    (from, to) revisions."""
    target = to or head()
    with engine.begin() as conn:
        if backend.migration_lock:
            conn.exec_driver_sql(backend.migration_lock)
        before = current(conn)
        _refuse_unknown(before)
        if before != target:
            command.upgrade(_config(conn), target)
        return before, target


def ensure(
    engine: sa.Engine, backend: Backend, *, auto_upgrade: bool = False, create: bool = True
) -> None:
    """Migrate an empty database (unless not `create`); refuse one that is newer, or older
    unless `auto_upgrade`."""
    with engine.connect().execution_options(interlock_read=True) as conn:
        rev = current(conn)
    _refuse_unknown(rev)
    if rev == head():
        return
    if rev is None and not create:
        shown = engine.url.render_as_string(hide_password=True)
        raise BadInput(f"`{shown}` holds no interlock database: check --db (`interlock "
                       "serve` or `interlock db upgrade` creates one)")
    if rev is None or auto_upgrade:
        upgrade(engine, backend)
        return
    raise SchemaOutdated(
        f"the database schema is at revision {rev}, this interlock needs {head()}: "
        "run `interlock db upgrade`"
    )


def _refuse_unknown(rev: str | None) -> None:
    if rev is not None and rev not in known():
        raise SchemaTooNew(
            f"the database schema is at revision `{rev}`, newer than this interlock knows "
            f"(up to {head()}); upgrade interlock"
        )


def upgrade_url(url: str) -> tuple[str | None, str]:
    """`interlock db upgrade`: migrate the database at `url` to head."""
    from interlock.store.backends import backend_for_url

    backend = backend_for_url(url)
    engine = backend.create_engine(url)
    try:
        return upgrade(engine, backend)
    except sa.exc.DBAPIError as exc:
        shown = sa.engine.make_url(url).render_as_string(hide_password=True)
        raise StoreUnavailable(
            f"cannot upgrade the database `{shown}`: {str(exc.orig).strip()}"
        ) from None
    finally:
        engine.dispose()
