"""`interlock autonomy set|show`: agents' autonomy levels, and an admin's gated override.

Setting or pinning a level is a gate on the gate: it is stored as an `autonomy.set`
request that a second admin approves (the one who asked cannot); approving applies it.
"""

from __future__ import annotations

import getpass
from typing import Annotated

import typer

from interlock.autonomy import agent_levels, parse_level, propose, require_second_admin
from interlock.cli.db import DEFAULT_DB, DbOption
from interlock.cli.tokens import _policy
from interlock.policy import Policy, load_policy_text
from interlock.store import open_store

app = typer.Typer(help="Show agents' autonomy levels; set or pin one (needs a second admin).",
                  no_args_is_help=True, rich_markup_mode=None)

PolicyOption = Annotated[str | None, typer.Option(
    "--policy", help="The policy whose autonomy section applies (default ./interlock.yaml).")]


@app.command("set")
def set_(
    agent: Annotated[str, typer.Argument(metavar="AGENT", help="The agent's name.")],
    level: Annotated[str, typer.Argument(
        metavar="LEVEL", help="supervised, guided, autonomous or full_auto.")],
    pin: Annotated[bool, typer.Option("--pin", help="Keep it there: no promotion or "
                                      "demotion moves it.")] = False,
    reason: Annotated[str | None, typer.Option("--reason", help="Why, for the second admin "
                                               "and the audit trail.")] = None,
    requested_by: Annotated[str | None, typer.Option(
        "--as", help="The admin asking (default: the login name).")] = None,
    policy: PolicyOption = None,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Ask to set (with --pin: pin) an agent's level; prints the request a second admin
    approves."""
    parse_level(level)
    loaded = _policy(policy)
    store = open_store(db, create=False)
    try:
        asker = requested_by or getpass.getuser()
        require_second_admin(store, asker, "setting an autonomy level")
        r = propose(store, agent=agent, level=level, pinned=pin, reason=reason,
                    requested_by=asker, policy_hash=loaded.hash if loaded else "")
        typer.echo(r.id)
        typer.echo(f"request {r.id} waits for a second admin: approve it with "
                   f"`interlock approve {r.id}` (or POST /v1/actions/{r.id}/decision) as an "
                   f"admin other than `{asker}`; approving applies it", err=True)
    finally:
        store.close()


@app.command()
def show(
    agent: Annotated[str | None, typer.Argument(metavar="[AGENT]", help="Only this agent.")
    ] = None,
    policy: PolicyOption = None,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Each agent's level, whether it is pinned, and its track record."""
    loaded: Policy = _policy(policy) or load_policy_text("version: 1\n")
    store = open_store(db, create=False)
    try:
        rows = agent_levels(store, loaded, agent)
    finally:
        store.close()
    typer.echo(f"{'agent':<24} {'level':<11} {'pinned':<6} {'clean':>9} {'approved':>8} "
               f"{'denied':>6} {'reversed':>8} {'failed':>6}")
    for a in rows:
        clean = f"{a.clean_approvals}/{a.promote_after}" if a.promote_after else str(
            a.clean_approvals)
        typer.echo(f"{a.name:<24} {a.level or a.stored or '-':<11} "
                   f"{'yes' if a.pinned else 'no':<6} {clean:>9} {a.approvals:>8} "
                   f"{a.denials:>6} {a.reversals:>8} {a.failures_after_approval:>6}")
