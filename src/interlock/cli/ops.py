"""`interlock pause|unpause`: the kill switch, for one agent or for every agent.

While paused, every new action is denied with the reason; pending requests stay as they are.
The switch is in the database (`--db`), so every server on it sees it at once; with
`--server --token` an admin throws it through a running server instead, without access to
the database.
"""

from __future__ import annotations

import getpass
from typing import Annotated, Any

import typer

from interlock.cli.db import DEFAULT_DB
from interlock.errors import BadInput
from interlock.store import open_store

AgentOption = Annotated[
    str | None, typer.Option("--agent", help="Only this agent (default: every agent).")
]
DbOpt = Annotated[str | None, typer.Option(
    "--db", help=f"Database URL: sqlite:///FILE or postgresql://... [default: {DEFAULT_DB}]")]
ServerOpt = Annotated[str | None, typer.Option(
    "--server", envvar="INTERLOCK_SERVER",
    help="Throw the switch through this interlock server instead of a database.")]
TokenOpt = Annotated[str | None, typer.Option(
    "--token", envvar="INTERLOCK_TOKEN", help="An admin token, with --server.")]


def _who(agent: str | None) -> str:
    return f"agent {agent}" if agent else "every agent"


def _api_call(server: str, token: str | None, path: str, body: dict[str, Any]) -> Any:
    from interlock.cli.review import Api

    with Api(server, token) as api:
        return api.call("POST", path, body=body)


def _still_on(pauses: list[dict[str, Any]]) -> None:
    for p in pauses:
        typer.echo(f"still paused: {_who(p.get('agent'))}: {p.get('reason')}", err=True)


def pause(
    reason: Annotated[str, typer.Option("--reason", help="Why; agents read it in the deny.")],
    agent: AgentOption = None,
    db: DbOpt = None,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Deny every new action of an agent (or of all agents) until unpaused."""
    if server is not None:
        if db is not None:
            raise BadInput("give --db or --server, not both")
        body: dict[str, Any] = {"reason": reason}
        if agent is not None:
            body["agent"] = agent
        _api_call(server, token, "/v1/pause", body)
    else:
        store = open_store(db or DEFAULT_DB, create=False)
        try:
            store.pause(agent=agent, reason=reason, actor=f"cli:{getpass.getuser()}")
        finally:
            store.close()
    typer.echo(f"paused {_who(agent)}: {reason}", err=True)


def unpause(
    agent: AgentOption = None,
    db: DbOpt = None,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Lift a pause (an agent's own and everyone's are separate switches)."""
    if server is not None:
        if db is not None:
            raise BadInput("give --db or --server, not both")
        answer = _api_call(server, token, "/v1/unpause",
                           {"agent": agent} if agent is not None else {})
        left = list(answer.get("pauses") or [])
    else:
        store = open_store(db or DEFAULT_DB, create=False)
        try:
            store.unpause(agent=agent, actor=f"cli:{getpass.getuser()}")
            left = [{"agent": p.agent, "reason": p.reason} for p in store.pauses()]
        finally:
            store.close()
    typer.echo(f"unpaused {_who(agent)}", err=True)
    _still_on(left)
