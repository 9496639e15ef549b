"""`interlock insights [apply]` and `interlock export-feedback`: the feedback loop from a terminal.

Insights read the database (`--db`) or ask a server (`--server --token`); both print the same
tables and advice. `insights apply` rewrites the policy file for one advice item (a loosening
waits for a second admin). Names an agent chose are printed as plain text, never as Rich markup.
"""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from interlock.cli.db import DEFAULT_DB
from interlock.errors import BadInput
from interlock.insights.advice import payload
from interlock.insights.apply import apply_advice
from interlock.insights.export import export_lines
from interlock.insights.figures import GROUPINGS, parse_window, report
from interlock.server.ui_views import visible
from interlock.store import open_store

DEFAULT_POLICY = "interlock.yaml"

app = typer.Typer(
    help="Rates, time to decision and gate-tuning advice, as tables; `apply` applies an item.",
    invoke_without_command=True, no_args_is_help=False, rich_markup_mode=None,
)

DbOpt = Annotated[str | None, typer.Option(
    "--db", help=f"Database URL: sqlite:///FILE or postgresql://... [default: {DEFAULT_DB}]")]
ServerOpt = Annotated[str | None, typer.Option(
    "--server", envvar="INTERLOCK_SERVER", help="Ask this interlock server instead of a database.")]
TokenOpt = Annotated[str | None, typer.Option(
    "--token", envvar="INTERLOCK_TOKEN", help="A reviewer (or admin) token, with --server.")]
WindowOpt = Annotated[str, typer.Option("--window", help="How far back: 30m, 12h, 7d ...")]
ByOpt = Annotated[str, typer.Option("--by", help="Group the figures by rule, action or agent.")]
PolicyOpt = Annotated[Path | None, typer.Option(
    "--policy", help="Policy file the advice diffs are made against, with --db "
                     f"[default: ./{DEFAULT_POLICY} if it exists].")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the raw JSON instead of tables.")]


def _pct(x: Any) -> str:
    return "-" if x is None else f"{float(x) * 100:.1f}%"


def _secs(x: Any) -> str:
    if x is None:
        return "-"
    s = float(x)
    if s < 60:
        return f"{s:.1f}s"
    if s < 3600:
        return f"{s / 60:.1f}m"
    if s < 2 * 86400:
        return f"{s / 3600:.1f}h"
    return f"{s / 86400:g}d"


def _t(value: Any) -> Text:
    return Text(visible(str(value)))


def groups_table(data: dict[str, Any]) -> Table:
    """Figures per group as a table."""
    table = Table(title=f"Per {data['by']} over the last {_secs(data['window_seconds'])}",
                  title_justify="left")
    for name, justify in (
        (data["by"], "left"), ("requests", "right"), ("decided", "right"),
        ("approved", "right"), ("untouched", "right"), ("edited", "right"),
        ("denied", "right"), ("timed out", "right"), ("median", "right"), ("p90", "right"),
        ("missed", "right"), ("reversed", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for g in [*data["groups"], data["overall"]]:
        table.add_row(
            _t(g["key"]), _t(g["requests"]), _t(g["decided"]),
            _t(_pct(g["approval_rate"])), _t(_pct(g["untouched_rate"])),
            _t(_pct(g["edit_rate"])), _t(_pct(g["denial_rate"])),
            _t(_pct(g["timeout_rate"])), _t(_secs(g["median_seconds"])),
            _t(_secs(g["p90_seconds"])), _t(_pct(g["miss_rate"])),
            _t(_pct(g["reversal_rate"])),
            end_section=g is data["groups"][-1] if data["groups"] else False,
        )
    return table


def reviewers_table(data: dict[str, Any]) -> Table:
    """How each reviewer votes."""
    table = Table(title="Reviewers", title_justify="left")
    for name in ("reviewer", "votes", "approvals", "under 3 s", "median"):
        table.add_column(name, justify="left" if name == "reviewer" else "right")
    for r in data["reviewers"]:
        table.add_row(_t(r["reviewer"]), _t(r["votes"]), _t(r["approvals"]),
                      _t(_pct(r["fast_share"])), _t(_secs(r["median_seconds"])))
    return table


def advice_panels(data: dict[str, Any]) -> list[Panel]:
    """One panel per advice item: what, why (threshold and evidence), and the diff."""
    panels = []
    for a in data["advice"]:
        parts: list[Any] = [
            _t(a["detail"]),
            Text(f"threshold: {a['threshold']}", style="dim"),
            Text("evidence: " + visible(json.dumps(a["evidence"], sort_keys=True)),
                 style="dim"),
        ]
        if a["diff"]:
            parts.append(Syntax(a["diff"], "diff", theme="ansi_dark", word_wrap=True))
        elif a["kind"] != "rubber_stamping":
            parts.append(Text("no policy diff: the policy file is not at hand, or cannot "
                              "express this change", style="dim"))
        if a["loosens"]:
            parts.append(Text("loosens a gate: applying it needs a second admin's approval",
                              style="yellow"))
        if a["diff"]:
            parts.append(Text("apply it: interlock insights apply " + visible(a["id"]),
                              style="dim"))
        panels.append(Panel(Group(*parts), title=_t(f"{a['kind']}: {a['title']}"),
                            title_align="left"))
    return panels


def render(data: dict[str, Any], console: Console) -> None:
    """Tables and advice."""
    console.print(groups_table(data))
    if data["reviewers"]:
        console.print(reviewers_table(data))
    if data["advice"]:
        console.print(Text("Advice", style="bold"))
        for panel in advice_panels(data):
            console.print(panel)
    else:
        console.print(Text("No advice: no figure crossed a threshold in this window."))


@app.callback()
def insights(
    ctx: typer.Context,
    db: DbOpt = None,
    server: ServerOpt = None,
    token: TokenOpt = None,
    window: WindowOpt = "7d",
    by: ByOpt = "rule",
    policy: PolicyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Rates, time to decision and gate-tuning advice, as tables; `insights apply ADVICE_ID`
    applies one advice item to the policy file."""
    if ctx.invoked_subcommand is not None:
        return
    if by not in GROUPINGS:
        raise BadInput(f"--by is one of {', '.join(GROUPINGS)}, not `{by}`")
    seconds = parse_window(window)
    if server is not None:
        if db is not None:
            raise BadInput("give --db or --server, not both")
        from interlock.cli.review import Api

        with Api(server, token) as api:
            data: dict[str, Any] = api.call("GET", "/v1/insights",
                                            params={"window": window, "by": by})
    else:
        if policy is None and Path(DEFAULT_POLICY).is_file():
            policy = Path(DEFAULT_POLICY)
        store = open_store(db or DEFAULT_DB, create=False)
        try:
            data = payload(report(store, window=seconds, by=by),
                           str(policy) if policy is not None else None)
        finally:
            store.close()
    if as_json:
        typer.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    render(data, Console(highlight=False, soft_wrap=False))


@app.command("apply")
def apply_(
    advice_id: Annotated[str, typer.Argument(
        metavar="ADVICE_ID", help="The item's id as `interlock insights` prints it "
        "(KIND-SUBJECT@HASH: the hash is the policy's when the advice was computed).")],
    db: DbOpt = None,
    server: ServerOpt = None,
    token: Annotated[str | None, typer.Option(
        "--token", envvar="INTERLOCK_TOKEN", help="An admin token, with --server.")] = None,
    policy: Annotated[Path | None, typer.Option(
        "--policy", help=f"The policy file to change, with --db [default: ./{DEFAULT_POLICY}]. "
        "With --server, the file the server runs is changed.")] = None,
    window: Annotated[str, typer.Option(
        "--window", help="The window the advice was computed over: 30m, 12h, 7d ...")] = "7d",
    reason: Annotated[str | None, typer.Option(
        "--reason", help="Why, for the second admin and the audit trail.")] = None,
    requested_by: Annotated[str | None, typer.Option(
        "--as", help="The admin applying it, with --db (default: the login name).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Apply one advice item to the policy file, comments kept, checked to load, audited.

    A change that only tightens is applied at once. A change that loosens a gate is stored
    as a request that a second admin approves (`interlock approve ID`, the UI, or the API);
    approving it applies it, and the server that approves it decides with the new policy.
    The id names the policy hash the advice was computed against: if the file changed since,
    nothing is written. With --db, a server running the same file follows the change within a
    few seconds."""
    seconds = parse_window(window)
    if server is not None:
        if db is not None or policy is not None or requested_by is not None:
            raise BadInput("with --server, the server's policy file and your token's admin "
                           "apply it: leave out --db, --policy and --as")
        from interlock.cli.review import Api

        with Api(server, token) as api:
            data: dict[str, Any] = api.call(
                "POST", "/v1/insights/apply",
                body={"advice_id": advice_id, "window": window, "reason": reason})
        request = data.get("request") or {}
        data["request_id"] = request.get("id")
    else:
        path = policy if policy is not None else Path(DEFAULT_POLICY)
        if not path.is_file():
            raise BadInput(f"no policy file `{path}`: pass --policy FILE")
        store = open_store(db or DEFAULT_DB, create=False)
        try:
            asker = requested_by or getpass.getuser()
            done = apply_advice(store, policy_file=str(path), advice_id=advice_id,
                                admin=asker, window=seconds, reason=reason)
        finally:
            store.close()
        data = {**done.to_json(), "policy_file": done.file, "requested_by": asker}
    if as_json:
        typer.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    if data["status"] == "pending":
        rid = data["request_id"]
        typer.echo(rid)
        typer.echo(f"advice {visible(advice_id)} loosens a gate: request {rid} waits for a "
                   f"second admin. Approve it with `interlock approve {rid}` (or in the UI, or "
                   f"POST /v1/actions/{rid}/decision) as an admin other than the one asking; "
                   "approving it applies the change", err=True)
        return
    typer.echo(visible(data["diff"]), nl=False)
    typer.echo(f"applied {visible(advice_id)} to {visible(data['policy_file'])}: policy "
               f"{data['old_hash'][:12]} -> {data['new_hash'][:12]}, audited as policy.changed",
               err=True)


def export_feedback(
    db: DbOpt = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write the JSONL here instead of stdout.")] = None,
    include_pending: Annotated[bool, typer.Option(
        "--include-pending", help="Also export requests still waiting.")] = False,
) -> None:
    """JSONL eval data: proposal, policy result, votes, edits, notes, outcome, reviews."""
    store = open_store(db or DEFAULT_DB, create=False)
    try:
        lines = export_lines(store, include_pending=include_pending)
        if output is None:
            for text in lines:
                sys.stdout.write(text + "\n")
        else:
            try:
                f = output.open("w", encoding="utf-8")
            except OSError as exc:
                raise BadInput(f"cannot write `{output}`: {exc.strerror or exc}") from None
            with f:
                n = sum(f.write(text + "\n") > 0 for text in lines)
            typer.echo(f"wrote {n} lines to {output}", err=True)
    finally:
        store.close()
