"""`interlock db upgrade`: bring a database's schema to the revision this interlock knows.

A server migrates an empty database by itself; an older one waits for this command.
"""

from __future__ import annotations

from typing import Annotated

import typer

from interlock.store.migrate import upgrade_url

app = typer.Typer(help="Manage the database.", no_args_is_help=True, rich_markup_mode=None)

DEFAULT_DB = "sqlite:///./interlock.db"

DbOption = Annotated[
    str, typer.Option("--db", help="Database URL: sqlite:///FILE or postgresql://...")
]


@app.command()
def upgrade(db: DbOption = DEFAULT_DB) -> None:
    """Apply schema migrations (each recorded in the transaction that applies it)."""
    before, after = upgrade_url(db)
    if before == after:
        typer.echo(f"database already at revision {after}")
    else:
        typer.echo(f"database upgraded from revision {before or 'none'} to {after}")
