"""`interlock mcp-proxy` and `interlock hook claude-code`: interlock in front of MCP servers
and Claude Code. The integrations (and the `mcp` package) are imported only when run.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from interlock.cli.db import DEFAULT_DB, DbOption
from interlock.errors import BadInput, Conflict, Gone, InterlockError

if TYPE_CHECKING:
    from interlock.integrations.claude_code import Verdict
    from interlock.sdk.remote import RemoteClient

hook_app = typer.Typer(help="Hooks for coding agents.", no_args_is_help=True,
                       rich_markup_mode=None)

PolicyOption = Annotated[str | None, typer.Option(
    "--policy", help="Embedded mode: this policy file decides, in this process.")]
ServerOption = Annotated[str | None, typer.Option(
    "--server", envvar="INTERLOCK_SERVER", help="Remote mode: the interlock server's URL.")]
TokenOption = Annotated[str | None, typer.Option(
    "--token", envvar="INTERLOCK_TOKEN", help="Remote mode: an agent token.")]


def _mode(policy: str | None, server: str | None, token: str | None) -> str:
    if policy and server:
        raise BadInput("give --policy FILE or --server URL --token T, not both")
    if server:
        if not token:
            raise BadInput("--server needs --token (an agent token) or INTERLOCK_TOKEN")
        return "remote"
    if not policy:
        raise BadInput("give --policy FILE (embedded) or --server URL --token T (remote)")
    if not Path(policy).is_file():
        raise BadInput(f"no policy file `{policy}`")
    return "embedded"


def _listen(value: str | None) -> tuple[str, int] | None:
    if value is None:
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise BadInput(f"--listen takes HOST:PORT, not `{value}`")
    return host or "127.0.0.1", int(port)


def mcp_proxy(
    command: Annotated[list[str], typer.Argument(
        help="The downstream MCP server's command, after `--`.", show_default=False)],
    policy: PolicyOption = None,
    server: ServerOption = None,
    token: TokenOption = None,
    agent: Annotated[str | None, typer.Option(
        "--agent", help="Agent name (embedded: default `mcp-proxy`; remote: the token's).")
    ] = None,
    listen: Annotated[str | None, typer.Option(
        "--listen", help="Serve streamable HTTP at HOST:PORT/mcp instead of stdio.")] = None,
    wait: Annotated[float, typer.Option(
        "--wait", help="Seconds a call waits for a reviewer before it returns the request "
                       "id to retry with.")] = 300.0,
    db: DbOption = DEFAULT_DB,
    public_url: Annotated[str | None, typer.Option(
        "--public-url", help="Embedded mode: base URL of review links (the `interlock serve` "
                             "sharing --db).")] = None,
) -> None:
    """An MCP server in front of COMMAND's, gating its tools/call through interlock."""
    from interlock.cli.serve import public_base

    mode = _mode(policy, server, token)
    address = _listen(listen)
    public = public_base(public_url)
    if wait < 0:
        raise BadInput("--wait must be 0 or more seconds")
    try:
        import anyio

        from interlock.integrations import mcp_proxy as proxy
    except ImportError as exc:
        raise BadInput(f"the MCP gateway needs the `mcp` package ({exc.name} is missing): "
                       'pip install "interlock[mcp]"') from None
    from interlock.sdk import Gate, WebChannel

    if mode == "embedded":
        assert policy is not None
        gate = Gate.from_policy(policy, db, channel=WebChannel(), agent=agent or "mcp-proxy")
        base = public or ""
    else:
        assert server is not None and token is not None
        gate = Gate.connect(server, token=token, agent=agent)
        base = server.rstrip("/")
    gating = proxy.Gating(wait=wait, link=lambda rid: f"{base}/requests/{rid}")
    try:
        anyio.run(lambda: proxy.serve(gate.client, command, gating, listen=address))
    finally:
        gate.close()


def claude_code(
    policy: PolicyOption = None,
    server: ServerOption = None,
    token: TokenOption = None,
    wait: Annotated[bool, typer.Option(
        "--wait", help="With --server: submit and wait for a reviewer instead of asking the "
                       "local user.")] = False,
    timeout: Annotated[float, typer.Option(
        "--timeout", help="With --wait: seconds to wait before handing the call to the local "
                          "user (keep it under the hook's own timeout).")] = 540.0,
    agent: Annotated[str, typer.Option(
        "--agent", help="Embedded mode: the agent name the policy sees.")] = "claude-code",
) -> None:
    """Claude Code PreToolUse hook: read the hook JSON on stdin, print allow / deny / ask."""
    from interlock.integrations import claude_code as cc

    try:
        mode = _mode(policy, server, token)
        if wait and mode != "remote":
            raise BadInput("--wait needs --server URL --token T (a reviewer decides there)")
        decide = (_hook_remote(server or "", token or "", wait, timeout) if mode == "remote"
                  else _hook_embedded(policy or "", agent))
        verdict = cc.answer(sys.stdin.read(), decide)
    except InterlockError as exc:
        print(f"interlock hook: {exc.message}", file=sys.stderr)
        verdict = cc.fail_closed(exc.message)
    except Exception as exc:  # never a traceback into Claude Code: deny, say why
        print(f"interlock hook: {type(exc).__name__}: {exc}", file=sys.stderr)
        verdict = cc.fail_closed(f"{type(exc).__name__}: {exc}")
    typer.echo(json.dumps(verdict.to_json()))


def _hook_embedded(path: str, agent: str) -> Any:
    from interlock.integrations.claude_code import verdict_for
    from interlock.policy import load_policy

    loaded = load_policy(Path(path))

    def decide(action: dict[str, Any]) -> Verdict:
        result = loaded.evaluate({**action, "agent": agent})
        return verdict_for(result.decision.value, result.reasons)

    return decide


def _hook_remote(server: str, token: str, wait: bool, timeout: float) -> Any:
    import httpx

    from interlock.integrations.claude_code import verdict_for
    from interlock.sdk.remote import RemoteClient

    def evaluate(action: dict[str, Any]) -> Verdict:
        try:
            resp = httpx.post(f"{server.rstrip('/')}/v1/evaluate", json=action, timeout=10.0,
                              headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError as exc:
            raise InterlockError(f"cannot reach interlock at {server}: {exc}") from None
        if resp.status_code != 200:
            raise InterlockError(f"interlock answered {resp.status_code}: {resp.text[:300]}")
        data = resp.json()
        return verdict_for(str(data["decision"]), data.get("reasons") or [])

    def submit_and_wait(action: dict[str, Any]) -> Verdict:
        client = RemoteClient(server, token=token, retries=2)
        try:
            return _await_reviewer(client, action, timeout, server.rstrip("/"))
        finally:
            client.close()

    return submit_and_wait if wait else evaluate


def _await_reviewer(client: RemoteClient, action: dict[str, Any], timeout: float,
                    base: str) -> Verdict:
    import uuid

    from interlock.integrations.claude_code import Verdict, verdict_for

    snap = client.submit({**action, "idempotency_key": uuid.uuid4().hex})
    link = f"{base}/requests/{snap.id}"
    deadline = time.monotonic() + timeout
    while snap.state == "pending":
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            client.cancel(snap.id, "nobody decided before the Claude Code hook's timeout; "
                                   "handed to the local user")
            return Verdict(permission="ask", reason=(
                f"interlock: no reviewer decided in time (request {snap.id}, {link}); "
                "you decide"))
        snap = client.wait(snap.id, min(remaining, 30.0))
    if snap.state not in ("allowed", "notified", "approved"):
        if snap.decision in ("deny", "suggest") and snap.state in ("denied", "suggested"):
            return verdict_for(snap.decision, snap.reasons, rid=snap.id)
        why = snap.reason or "; ".join(snap.reasons) or snap.state
        return Verdict(permission="deny",
                       reason=f"interlock: a reviewer {snap.state.replace('_', ' ')} it "
                              f"(request {snap.id}): {why}")
    try:
        claimed = client.claim(snap.id)
    except (Conflict, Gone) as exc:
        return Verdict(permission="deny", reason=f"interlock: {exc.message} (request {snap.id})")
    # The hook never sees how the tool went; Claude Code runs it right after this answer.
    client.outcome(snap.id, "succeeded", "handed to Claude Code to run")
    edited = claimed.args if claimed.args != action.get("args") else None
    by = "approved by a reviewer" if snap.state == "approved" else snap.decision
    return Verdict(permission="allow", updated_input=edited,
                   reason=f"interlock: {by} (request {snap.id})"
                          + (" with edited input" if edited is not None else ""))


hook_app.command("claude-code")(claude_code)
