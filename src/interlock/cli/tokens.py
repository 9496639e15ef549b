"""`interlock token create|list|revoke`: bearer tokens, printed once and stored hashed.

A reviewer token in a group the policy names as approvers is a gate on the gate: it is
proposed as an interlock action (`token.create`) that a second admin approves first. With no
policy to read (no `--policy`, no ./interlock.yaml), every group counts as an approver group.
"""

from __future__ import annotations

import datetime as dt
import getpass
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from interlock.autonomy import gate_result, require_second_admin
from interlock.cli.db import DEFAULT_DB, DbOption
from interlock.errors import BadInput, Conflict
from interlock.policy import Policy, load_policy, parse_duration
from interlock.store import State, Store, open_store

app = typer.Typer(help="Create, list and revoke bearer tokens.", no_args_is_help=True,
                  rich_markup_mode=None)

#: The built-in agent that proposes interlock's own gated changes.
INTERLOCK_AGENT = "interlock"
#: Exit code when the token waits for a second admin's approval.
PENDING_EXIT = 3


class StillPending(Conflict):
    """The gated token is not approved yet."""

    code = "pending_approval"


def _split(text: str | None) -> list[str]:
    return [x.strip() for x in (text or "").split(",") if x.strip()]


def approver_groups(policy: Policy) -> set[str]:
    """Every group (not `user:`) the policy names as an approver anywhere."""
    names = set(policy.defaults.approvers)
    for rule in policy.rules:
        if rule.gate is None:
            continue
        names.update(rule.gate.escalate_to)
        for stage in rule.gate.stages:
            names.update(stage.approvers)
    return {n for n in names if isinstance(n, str) and not n.startswith("user:")}


def _issue(store: Store, args: dict[str, Any], actor: str) -> str:
    _, secret = store.create_token(
        kind=args["kind"], name=args["name"], actor=actor, groups=args.get("groups") or (),
        environment=args.get("environment"), actions=args.get("actions"),
        expires_at=args.get("expires_at"),
    )
    return secret


def _finish(store: Store, request_id: str, wait: float) -> str:
    """The token of an approved `token.create` request (claimed once), or an error."""
    deadline = time.monotonic() + wait
    while True:
        r = store.get(request_id)
        if r.agent != INTERLOCK_AGENT or r.action_name != "token.create":
            raise BadInput(f"request `{request_id}` is not a token request")
        if r.state is not State.PENDING or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    if r.state is State.PENDING:
        raise StillPending(
            f"request `{request_id}` waits for a second admin: approve it with "
            f"POST /v1/actions/{request_id}/decision (an admin token other than "
            f"`{r.action['args'].get('requested_by')}`), then run "
            f"`interlock token create --request {request_id}`"
        )
    claim = store.claim(request_id, agent=INTERLOCK_AGENT, lease=600.0)
    secret = _issue(store, claim.args, f"admin:{claim.args.get('requested_by')}")
    store.outcome(request_id, agent=INTERLOCK_AGENT, status="succeeded",
                  summary=f"token issued to {claim.args['name']}")
    return secret


@app.command()
def create(
    agent: Annotated[str | None, typer.Option("--agent", help="An agent token.")] = None,
    reviewer: Annotated[str | None, typer.Option("--reviewer", help="A reviewer token.")] = None,
    admin: Annotated[str | None, typer.Option("--admin", help="An admin token.")] = None,
    environment: Annotated[str | None, typer.Option(
        "--environment", help="Pin an agent token to this environment.")] = None,
    actions: Annotated[str | None, typer.Option(
        "--actions", help="Comma-separated action globs an agent token may propose.")] = None,
    groups: Annotated[str | None, typer.Option(
        "--groups", help="Comma-separated reviewer groups.")] = None,
    expires: Annotated[str | None, typer.Option(
        "--expires", help="Lifetime, e.g. 30d or 12h (default: never).")] = None,
    policy: Annotated[str | None, typer.Option(
        "--policy", help="Policy whose approver groups are gated (default ./interlock.yaml; "
        "with neither, every group is gated).")
    ] = None,
    requested_by: Annotated[str | None, typer.Option(
        "--as", help="The admin asking (for gated tokens; default: the login name).")] = None,
    request: Annotated[str | None, typer.Option(
        "--request", help="Finish a gated token request once a second admin approved it.")
    ] = None,
    wait: Annotated[float, typer.Option(
        "--wait", help="Seconds to wait for a gated token's approval.")] = 0.0,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Create a token and print it alone on stdout (it is never shown again)."""
    store = open_store(db, create=False)
    try:
        if request is not None:
            typer.echo(_finish(store, request, wait))
            return
        chosen = [(k, v) for k, v in (("agent", agent), ("reviewer", reviewer),
                                      ("admin", admin)) if v]
        if len(chosen) != 1:
            raise BadInput("name exactly one of --agent NAME, --reviewer NAME, --admin NAME")
        kind, name = chosen[0]
        if kind != "agent" and (environment or actions):
            raise BadInput("--environment and --actions pin agent tokens only")
        if kind != "reviewer" and groups:
            raise BadInput("--groups is for reviewer tokens")
        expires_at = None
        if expires is not None:
            seconds = parse_duration(expires)
            if seconds is None or seconds <= 0:
                raise BadInput(f"--expires takes a duration like 30d or 12h, not `{expires}`")
            expires_at = store.clock.now() + seconds
        args: dict[str, Any] = {"kind": kind, "name": name, "groups": _split(groups),
                                "environment": environment,
                                "actions": _split(actions) or None, "expires_at": expires_at}
        gated = _gated_groups(policy, args["groups"]) if kind == "reviewer" else []
        if not gated:
            typer.echo(_issue(store, args, "cli"))
            return
        asker = requested_by or getpass.getuser()
        require_second_admin(store, asker, "a token in an approver group")
        args["requested_by"] = asker
        loaded = _policy(policy)
        r = store.submit(
            agent=INTERLOCK_AGENT,
            action={"action": "token.create", "agent": INTERLOCK_AGENT, "args": args,
                    "reason": f"{asker} asks for a reviewer token for {name} in "
                    f"{', '.join(gated)}", "risk": "high"},
            result=gate_result(
                loaded.hash if loaded else "",
                f"a token in approver group(s) {', '.join(gated)} needs a second admin",
                guidance="A token in an approver group can approve gated actions: check "
                "that this person should."),
        )
        typer.echo(f"request {r.id}: a reviewer token in approver group(s) "
                   f"{', '.join(gated)} needs a second admin's approval", err=True)
        try:
            typer.echo(_finish(store, r.id, wait))
        except StillPending as exc:
            typer.echo(f"interlock: {exc.message}", err=True)
            raise typer.Exit(PENDING_EXIT) from None
    finally:
        store.close()


def _policy(path: str | None) -> Policy | None:
    if path is not None:
        return load_policy(path)
    default = Path("interlock.yaml")
    return load_policy(default) if default.exists() else None


def _gated_groups(policy: str | None, groups: list[str]) -> list[str]:
    loaded = _policy(policy)
    if loaded is None:
        # Which groups approve is the policy's to say; without it every group might, so
        # every one is gated (fail closed) rather than issued at once.
        if groups:
            typer.echo("interlock: no policy at ./interlock.yaml and no --policy: every group "
                       "counts as an approver group", err=True)
        return list(groups)
    approvers = approver_groups(loaded) | {"admin"}
    return [g for g in groups if g in approvers]


@app.command("list")
def list_(db: DbOption = DEFAULT_DB) -> None:
    """Every token, without its secret."""
    store = open_store(db, create=False)
    try:
        for t in store.tokens():
            state = "revoked" if t.revoked_at is not None else (
                "expired" if t.expires_at is not None and t.expires_at <= store.clock.now()
                else "live")
            extra = []
            if t.groups:
                extra.append("groups=" + ",".join(t.groups))
            if t.environment:
                extra.append(f"environment={t.environment}")
            if t.actions:
                extra.append("actions=" + ",".join(t.actions))
            if t.expires_at is not None:
                extra.append("expires=" + _when(t.expires_at))
            typer.echo(f"{t.id}  {t.kind:<8} {t.name:<20} {state:<7} {' '.join(extra)}".rstrip())
    finally:
        store.close()


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%MZ")


@app.command()
def revoke(
    token_id: Annotated[str, typer.Argument(metavar="ID", help="The token's id.")],
    db: DbOption = DEFAULT_DB,
) -> None:
    """Stop a token from working."""
    store = open_store(db, create=False)
    try:
        store.revoke_token(token_id, actor="cli")
        typer.echo(f"revoked {token_id}", err=True)
    finally:
        store.close()
