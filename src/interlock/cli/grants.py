"""`interlock grants list|revoke`: the decision-memory grants reviewers made.

A grant is made with `interlock approve ID --remember SCOPE`; revoking one is audited.
"""

from __future__ import annotations

import datetime as dt
import getpass
from typing import Annotated

import typer

from interlock.cli.db import DEFAULT_DB, DbOption
from interlock.store import open_store

app = typer.Typer(help="List and revoke decision-memory grants.", no_args_is_help=True,
                  rich_markup_mode=None)


def _when(ts: float | None) -> str:
    return "-" if ts is None else dt.datetime.fromtimestamp(ts, dt.UTC).strftime(
        "%Y-%m-%dT%H:%MZ")


@app.command("list")
def list_(
    all_: Annotated[bool, typer.Option("--all", help="Also revoked and expired grants.")
    ] = False,
    agent: Annotated[str | None, typer.Option("--agent", help="Only this agent's.")] = None,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Grants, newest first: id, agent, action, scope, who granted it, until when."""
    store = open_store(db, create=False)
    try:
        now = store.clock.now()
        for g in store.grants(agent=agent, live=not all_):
            state = "revoked" if g.revoked_at is not None else (
                "live" if g.active(now) else "expired")
            extra = []
            if g.run_id:
                extra.append(f"run={g.run_id}")
            if g.args_pattern:
                extra.append("args=" + ",".join(f"{k}:{v}" for k, v in g.args_pattern.items()))
            typer.echo(f"{g.id}  {g.agent:<16} {g.action:<20} {g.scope:<12} {state:<7} "
                       f"by {g.reviewer:<12} until {_when(g.expires_at)} "
                       f"{' '.join(extra)}".rstrip())
    finally:
        store.close()


@app.command()
def revoke(
    grant_id: Annotated[str, typer.Argument(metavar="ID", help="The grant's id.")],
    db: DbOption = DEFAULT_DB,
) -> None:
    """Stop a grant from applying."""
    store = open_store(db, create=False)
    try:
        store.revoke_grant(grant_id, actor=f"cli:{getpass.getuser()}")
        typer.echo(f"revoked {grant_id}", err=True)
    finally:
        store.close()
