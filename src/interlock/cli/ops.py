"""`interlock pause|unpause`: the kill switch, for one agent or for every agent.

While paused, every new action is denied with the reason; pending requests stay as they are.
"""

from __future__ import annotations

import getpass
from typing import Annotated

import typer

from interlock.cli.db import DEFAULT_DB, DbOption
from interlock.errors import BadInput
from interlock.store import open_store

AgentOption = Annotated[
    str | None, typer.Option("--agent", help="Only this agent (default: every agent).")
]


def pause(
    reason: Annotated[str, typer.Option("--reason", help="Why; agents read it in the deny.")],
    agent: AgentOption = None,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Deny every new action of an agent (or of all agents) until unpaused."""
    if not reason.strip():
        raise BadInput("--reason must say why, for the agents and the audit trail")
    store = open_store(db)
    try:
        store.pause(agent=agent, reason=reason, actor=f"cli:{getpass.getuser()}")
        typer.echo(f"paused {'agent ' + agent if agent else 'every agent'}: {reason}", err=True)
    finally:
        store.close()


def unpause(agent: AgentOption = None, db: DbOption = DEFAULT_DB) -> None:
    """Lift a pause."""
    store = open_store(db)
    try:
        store.unpause(agent=agent, actor=f"cli:{getpass.getuser()}")
        typer.echo(f"unpaused {'agent ' + agent if agent else 'every agent'}", err=True)
    finally:
        store.close()
