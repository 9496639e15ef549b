"""`interlock queue|approve|deny`: review pending requests from a terminal, over the HTTP API.

Every answer the server refuses, and every network failure, becomes one InterlockError line;
what an agent wrote is shown through `visible` and as plain Rich text, never as markup.
"""

from __future__ import annotations

import json
import re
import sys
import time
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from interlock.errors import BadInput, InterlockError
from interlock.policy.explain import describe_gate, format_duration
from interlock.policy.records import Gate
from interlock.server.ui_views import visible

DEFAULT_SERVER = "http://127.0.0.1:8765"
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: Seconds any one call to the server may take.
TIMEOUT = 30.0

ServerOption = Annotated[str, typer.Option(
    "--server", envvar="INTERLOCK_SERVER", show_envvar=True,
    help="Base URL of the interlock server.")]
TokenOption = Annotated[str | None, typer.Option(
    "--token", envvar="INTERLOCK_TOKEN", show_envvar=True,
    help="A reviewer (or admin) token.")]


class ServerRefused(InterlockError):
    """The server answered with an error: its `{error: {code, message}}`, in one line."""

    code = "server_refused"


class Unreachable(InterlockError):
    """The server could not be reached, or did not answer in time."""

    code = "unreachable"


class Api:
    """A small JSON client for `/v1` with a bearer token; every failure is an InterlockError."""

    def __init__(self, server: str, token: str | None, *, timeout: float = TIMEOUT) -> None:
        if not token:
            raise BadInput("no token: pass --token or set INTERLOCK_TOKEN")
        self.base = server.rstrip("/")
        if not self.base.startswith(("http://", "https://")):
            raise BadInput(f"--server must be an http:// or https:// URL, not `{server}`")
        self.client = httpx.Client(base_url=self.base, timeout=timeout,
                                   headers={"Authorization": f"Bearer {token}"})

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def call(self, method: str, path: str, *, body: Any = None,
             params: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
        """The JSON answer of a successful call; raises ServerRefused or Unreachable."""
        try:
            r = self.client.request(
                method, path, json=body, params=params,
                timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout)
        except httpx.TimeoutException:
            raise Unreachable(f"the server at {self.base} did not answer in time") from None
        except httpx.ConnectError as exc:
            raise Unreachable(f"cannot reach the server at {self.base}: {_reason(exc)}; "
                              "is `interlock serve` running?") from None
        except httpx.HTTPError as exc:
            raise Unreachable(f"talking to {self.base} failed: {_reason(exc)}") from None
        try:
            data = r.json()
        except ValueError:
            raise ServerRefused(f"{self.base} answered {r.status_code} with something that is "
                                "not JSON: is it an interlock server?") from None
        if r.is_error:
            error = data.get("error") if isinstance(data, dict) else None
            if isinstance(error, dict):
                code = str(error.get("code", "error"))
                raise ServerRefused(f"{error.get('message', 'refused')} "
                                    f"({r.status_code} {code})", code=code)
            raise ServerRefused(f"{self.base} answered {r.status_code}")
        return data

    def get(self, path: str, **params: Any) -> Any:
        return self.call("GET", path, params=params or None)

    def post(self, path: str, body: Any) -> Any:
        return self.call("POST", path, body=body)


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


def _console(*, wide: bool = False) -> Console:
    console = Console(highlight=False)
    if wide and not console.is_terminal:
        # Off a terminal (pipes, scripts) a table is not cut at 80 columns: ids stay whole.
        console.width = max(console.width, 160)
    return console


# --- what a request looks like in a terminal ----------------------------------------------


def _money(amount: Any, currency: Any) -> str | None:
    if isinstance(amount, bool) or not isinstance(amount, int | float):
        return None
    text = f"{amount:,.2f}" if not float(amount).is_integer() else f"{int(amount):,}"
    return f"{text} {currency}" if isinstance(currency, str) and currency else text


def summary(item: dict[str, Any]) -> str:
    """One sentence: who wants to do what, where, how big."""
    a: dict[str, Any] = item.get("action") or {}
    sentence = f"{item.get('agent', '?')} wants to run {a.get('action', '?')}"
    if isinstance(a.get("environment"), str) and a["environment"]:
        sentence += f" in {a['environment']}"
    extras = []
    money = _money(a.get("amount"), a.get("currency"))
    if money:
        extras.append(f"amount {money}")
    records = a.get("affected_records")
    if isinstance(records, int) and not isinstance(records, bool):
        extras.append(f"{records:,} record{'s' if records != 1 else ''}")
    recipients = a.get("recipients")
    if isinstance(recipients, list) and recipients:
        more = f" and {len(recipients) - 3} more" if len(recipients) > 3 else ""
        extras.append("to " + ", ".join(str(r) for r in recipients[:3]) + more)
    if extras:
        sentence += " (" + "; ".join(extras) + ")"
    return visible(sentence)


_RISK_STYLE = {"high": "bold red", "medium": "yellow", "low": "green"}


def _risk(risk: Any) -> Text:
    return Text(str(risk), style=_RISK_STYLE.get(str(risk), ""))


def _deadline(at: Any, now: float) -> str:
    if not isinstance(at, int | float):
        return "-"
    left = at - now
    return f"in {format_duration(left)}" if left > 0 else "overdue"


def queue_table(items: list[dict[str, Any]], now: float) -> Table:
    table = Table(show_lines=False, header_style="bold", expand=False)
    table.add_column("id", no_wrap=True, min_width=26)
    table.add_column("risk", no_wrap=True)
    table.add_column("action", no_wrap=True)
    table.add_column("agent", no_wrap=True)
    table.add_column("age", no_wrap=True, justify="right")
    table.add_column("deadline", no_wrap=True)
    table.add_column("summary", overflow="fold", ratio=1)
    for item in items:
        action = item.get("action") or {}
        created = item.get("created_at")
        age = format_duration(now - created) if isinstance(created, int | float) else "-"
        table.add_row(
            Text(str(item.get("id"))), _risk(item.get("risk")),
            Text(visible(action.get("action", "?"))), Text(visible(item.get("agent", "?"))),
            age, _deadline(item.get("deadline"), now), Text(summary(item)),
        )
    return table


def _why(item: dict[str, Any]) -> list[str]:
    lines = []
    reqs = item.get("requirements")
    if isinstance(reqs, dict):
        for raw in reqs.get("gates") or []:
            try:
                gate = Gate.from_json(raw)
            except (KeyError, TypeError, ValueError):
                continue
            source = "the policy's defaults" if gate.source == "defaults" else (
                f"rule {gate.source}")
            lines.append(f"{source} needs " + "; ".join(describe_gate(gate)))
    return [visible(line) for line in lines]


def _preview(raw: Any) -> RenderableType | None:
    if raw is None:
        return None
    kind = raw.get("kind") if isinstance(raw, dict) else None
    content = raw.get("content") if isinstance(raw, dict) else raw
    if kind == "email" and isinstance(content, dict):
        lines = [f"{k.replace('_', '-').capitalize()}: "
                 + (", ".join(map(str, v)) if isinstance(v, list) else str(v))
                 for k, v in content.items() if k not in ("body", "text", "html")]
        body = content.get("body", content.get("text", ""))
        text = "\n".join(lines) + "\n\n" + (body if isinstance(body, str) else json.dumps(body))
        if isinstance(content.get("html"), str):
            text += "\n\n[HTML source]\n" + content["html"]
        return Text(visible(text))
    if kind in ("diff", "sql") and isinstance(content, str):
        return Syntax(visible(content), kind, word_wrap=True, theme="ansi_dark")
    if isinstance(content, str):
        return Text(visible(content))
    return Syntax(visible(json.dumps(content, indent=2, ensure_ascii=False)), "json",
                  word_wrap=True, theme="ansi_dark")


def request_view(item: dict[str, Any]) -> RenderableType:
    """The request as a reviewer needs it: summary, why gated, the agent's case, args, preview."""
    a: dict[str, Any] = item.get("action") or {}
    parts: list[RenderableType] = []
    head = Text()
    head.append(summary(item), style="bold")
    parts.append(head)
    meta = Text()
    meta.append("risk ")
    meta.append_text(_risk(item.get("risk")))
    meta.append(f" · state {item.get('state')} · version {item.get('version')}")
    parts.append(meta)
    parts.append(Text("\nWhy it waits", style="bold underline"))
    for reason in item.get("reasons") or []:
        parts.append(Text(f"  • {visible(reason)}"))
    for line in _why(item):
        parts.append(Text(f"  {line}"))
    case = []
    if a.get("reason"):
        case.append(f"reason: {a['reason']}")
    context = a.get("context")
    if isinstance(context, dict) and context.get("plan_step") is not None:
        total = context.get("plan_total")
        case.append(f"plan: step {context['plan_step']}" + (f" of {total}" if total else ""))
    if isinstance(a.get("confidence"), int | float) and not isinstance(a["confidence"], bool):
        case.append(f"confidence: {a['confidence']:.0%}")
    alts = a.get("alternatives")
    if isinstance(alts, list) and alts:
        case.append("alternatives: " + "; ".join(str(x) for x in alts))
    if case:
        parts.append(Text("\nThe agent says", style="bold underline"))
        parts.extend(Text(f"  {visible(line)}") for line in case)
    parts.append(Text("\nArguments (what will run)", style="bold underline"))
    args = item.get("final_args", a.get("args") or {})
    parts.append(Syntax(visible(json.dumps(args, indent=2, ensure_ascii=False)), "json",
                        word_wrap=True, theme="ansi_dark"))
    shown = _preview(a.get("preview"))
    if shown is not None:
        kind = a["preview"].get("kind", "") if isinstance(a.get("preview"), dict) else ""
        parts.append(Text(f"\nPreview{f' ({kind})' if kind else ''}", style="bold underline"))
        parts.append(shown)
    return Panel(Group(*parts), title=Text(f"request {item.get('id')}"), title_align="left")


# --- commands -----------------------------------------------------------------------------


def queue(
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    kind: Annotated[str, typer.Option(
        "--kind", help="approval, review, suggested or unknown.")] = "approval",
    limit: Annotated[int, typer.Option("--limit", min=1, max=500,
                                       help="Show at most this many.")] = 100,
) -> None:
    """List what this reviewer may act on, oldest first."""
    with Api(server, token) as api:
        data = api.get("/v1/queue", kind=kind, limit=limit)
    items = data.get("items", []) if isinstance(data, dict) else []
    console = _console(wide=True)
    if not items:
        console.print(f"nothing waits for you ({kind} queue is empty)")
        return
    console.print(queue_table(items, time.time()))
    console.print(f"{len(items)} request{'s' if len(items) != 1 else ''}; "
                  "`interlock approve ID` shows one in full")


def _request_id(raw: str) -> str:
    if not _ID.match(raw):
        raise BadInput(f"`{visible(raw)}` is not a request id")
    return raw


def _args_json(raw: str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise BadInput(f"--args is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise BadInput("--args must be a JSON object of the edited arguments")
    return value


def _ask_phrase(console: Console, phrase: str) -> str:
    if not sys.stdin.isatty():
        raise BadInput(f"this request needs typed confirmation and there is no terminal to "
                       f"ask on: pass --confirmation '{phrase}'")
    console.print(Text.assemble("Type ", (phrase, "bold"), " to approve: "), end="")
    try:
        return input()
    except EOFError:
        raise BadInput("no confirmation typed: nothing was approved") from None


def _remember(scope: str, until: str | None, pattern: str | None) -> dict[str, Any]:
    if scope not in ("agent_action", "run", "until"):
        raise BadInput(f"--remember is agent_action, run or until, not `{scope}`")
    out: dict[str, Any] = {"scope": scope}
    if until is not None:
        out["until"] = until
    if pattern is not None:
        parsed = _args_json(pattern)
        if parsed is None:
            raise BadInput("--args-pattern must be a JSON object")
        out["args_pattern"] = parsed
    return out


def approve(
    request_id: Annotated[str, typer.Argument(metavar="ID", help="The request's id.")],
    note: Annotated[str | None, typer.Option("--note", help="A note for the agent.")] = None,
    args: Annotated[str | None, typer.Option(
        "--args", help="Edited arguments as a JSON object (re-checked by the policy).")] = None,
    confirmation: Annotated[str | None, typer.Option(
        "--confirmation", help="The confirmation phrase, where the request needs one.")] = None,
    remember: Annotated[str | None, typer.Option(
        "--remember", help="Approve and remember: agent_action, run or until (a grant that "
        "lets matching later actions of this agent through).")] = None,
    until: Annotated[str | None, typer.Option(
        "--until", help="With --remember: when the grant ends (ISO time or epoch seconds).")
    ] = None,
    args_pattern: Annotated[str | None, typer.Option(
        "--args-pattern", help='With --remember: {"path": "glob or literal"} as JSON.')
    ] = None,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
) -> None:
    """Show a request in full and approve it.

    Where the request needs typed confirmation, its phrase is asked for on the terminal,
    or given with --confirmation.
    """
    request_id = _request_id(request_id)
    edited = _args_json(args)
    console = _console()
    with Api(server, token) as api:
        item = api.get(f"/v1/actions/{request_id}")
        console.print(request_view(item))
        if item.get("state") != "pending":
            raise BadInput(f"request `{request_id}` is {item.get('state')}, not pending: "
                           "there is nothing to approve")
        phrase = item.get("confirmation_phrase")
        if phrase:
            typed = confirmation if confirmation is not None else _ask_phrase(console, phrase)
            if typed.strip() != phrase:
                raise BadInput(f"the confirmation does not match `{phrase}`: "
                               "nothing was approved")
            confirmation = typed.strip()
        body: dict[str, Any] = {"verdict": "approve", "version": item.get("version")}
        if note:
            body["note"] = note
        if edited is not None:
            body["args"] = edited
        if confirmation is not None:
            body["confirmation"] = confirmation
        if remember is not None:
            body["remember"] = _remember(remember, until, args_pattern)
        done = api.post(f"/v1/actions/{request_id}/decision", body)
    state = done.get("state")
    if state == "pending":
        console.print(f"approval counted; request {request_id} still waits for other "
                      "approvers")
    else:
        console.print(f"request {request_id} is now {state}")


def deny(
    request_id: Annotated[str, typer.Argument(metavar="ID", help="The request's id.")],
    reason: Annotated[str, typer.Option(
        "--reason", help="Why; the agent reads it.")],
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
) -> None:
    """Deny a pending request, with a reason the agent can read."""
    if not reason.strip():
        raise BadInput("--reason must say why, for the agent and the audit trail")
    request_id = _request_id(request_id)
    with Api(server, token) as api:
        done = api.post(f"/v1/actions/{request_id}/decision",
                        {"verdict": "deny", "note": reason})
    _console().print(f"request {request_id} is now {done.get('state')}")
