"""The MCP gateway: an MCP server in front of another one, gating each `tools/call` by policy.

Tools, resources and prompts pass through unchanged; a call becomes an action (tool name,
arguments, risk from the tool's annotations), waits for people when the policy says so
(sending progress notifications), runs downstream at most once, and its outcome is reported.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import mcp_types as types
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server

from interlock.errors import Conflict, Gone, InterlockError
from interlock.sdk.action import RiskHint
from interlock.sdk.client import Client, Snapshot

log = logging.getLogger("interlock.mcp")
T = TypeVar("T")

#: The argument a retry passes to pick up an earlier request instead of submitting anew.
RESUME_ARG = "_interlock_request_id"
#: Seconds between progress notifications while a call waits for a reviewer.
PROGRESS_EVERY = 5.0
CLAIMABLE = frozenset({"allowed", "notified", "approved"})
Ctx = ServerRequestContext[Any, Any]


@dataclass(frozen=True, kw_only=True)
class Gating:
    """How the gateway treats calls; what `interlock mcp-proxy` decides once."""

    wait: float = 300.0
    """Seconds a call waits for a reviewer before it returns the request id to retry with."""
    link: Callable[[str], str] = lambda rid: f"/requests/{rid}"
    """The review page of a request id."""
    progress_every: float = PROGRESS_EVERY
    """Seconds between progress notifications while waiting."""


def risk_of(annotations: types.ToolAnnotations | None) -> tuple[RiskHint | None, list[str]]:
    """The risk hint and capabilities a tool's annotations give a call.

    `destructiveHint` → high; `openWorldHint` → medium; `readOnlyHint` → low, which the
    policy uses only when it does not lower the class it gives the tool itself."""
    if annotations is None:
        return None, []
    caps: list[str] = []
    hint: RiskHint | None = None
    if annotations.read_only_hint:
        caps.append("read_only")
        hint = "low"
    if annotations.open_world_hint:
        caps.append("open_world")
        hint = "medium"
    if annotations.destructive_hint and not annotations.read_only_hint:
        caps.append("destructive")
        hint = "high"
    return hint, caps


def text_result(text: str, *, meta: dict[str, Any] | None = None) -> types.CallToolResult:
    """An `isError` tool result the agent reads: the tool did not run."""
    result = types.CallToolResult(content=[types.TextContent(text=text)], is_error=True)
    if meta is not None:
        result.meta = {"interlock": meta}
    return result


class GatedTools:
    """The `tools/call` gate: submit (or resume), wait with progress, claim, run, report."""

    def __init__(self, client: Client, downstream: ClientSession, gating: Gating,
                 server_name: str = "") -> None:
        self.client = client
        self.downstream = downstream
        self.gating = gating
        self.server_name = server_name
        self.annotations: dict[str, types.ToolAnnotations | None] = {}

    async def list_tools(self, ctx: Ctx, params: types.PaginatedRequestParams | None
                         ) -> types.ListToolsResult:
        return await self._list(params)

    async def _list(self, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        result = await self.downstream.list_tools(params=params)
        for tool in result.tools:
            self.annotations[tool.name] = tool.annotations
        return result

    async def _annotations(self, name: str) -> types.ToolAnnotations | None:
        if name not in self.annotations:
            cursor: str | None = None
            while True:  # a call before any listing: learn the tools' annotations first
                page = await self._list(
                    types.PaginatedRequestParams(cursor=cursor) if cursor else None)
                cursor = page.next_cursor
                if not cursor:
                    break
        return self.annotations.get(name)

    async def call_tool(self, ctx: Ctx, params: types.CallToolRequestParams
                        ) -> types.CallToolResult:
        args = dict(params.arguments or {})
        resume = args.pop(RESUME_ARG, None)
        name = params.name
        try:
            if resume is not None:
                snap = await _thread(self.client.get, str(resume))
                if snap.action != name:
                    return text_result(
                        f"interlock: request {resume} is for `{snap.action}`, not `{name}`; "
                        "nothing ran")
            else:
                snap = await _thread(self.client.submit, await self._body(name, args))
            claimed_args = await self._decided(ctx, snap)
        except InterlockError as exc:
            return text_result(
                f"interlock could not decide on `{name}` ({exc.message}); the tool did not run")
        if isinstance(claimed_args, types.CallToolResult):
            return claimed_args
        rid, final = claimed_args
        return await self._run(ctx, rid, name, final)

    async def _body(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        hint, caps = risk_of(await self._annotations(name))
        body: dict[str, Any] = {
            "action": name, "args": args, "idempotency_key": uuid.uuid4().hex,
            "context": {"mcp_server": self.server_name} if self.server_name else {},
        }
        if hint is not None:
            body["risk"] = hint
        if caps:
            body["capabilities"] = caps
        return body

    async def _decided(self, ctx: Ctx, snap: Snapshot
                       ) -> tuple[str, dict[str, Any]] | types.CallToolResult:
        """Wait (with progress) until decided; the claimed final args, or the result to return."""
        deadline = time.monotonic() + self.gating.wait
        step = 0
        while True:
            while snap.state == "pending":
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return self._still_pending(snap)
                link = self.gating.link(snap.id)
                await ctx.session.report_progress(
                    step, None, f"waiting for a reviewer: interlock request {snap.id} ({link})")
                step += 1
                snap = await self._wait(snap, min(remaining, self.gating.progress_every))
            if snap.state not in CLAIMABLE:
                return self._refused(snap.action, snap.id, snap.state,
                                     snap.reason or "; ".join(snap.reasons))
            try:
                claim = await _thread(self.client.claim, snap.id)
            except Conflict as exc:
                if exc.code in ("not_decided", "reconfirmation_required"):
                    snap = await _thread(self.client.get, snap.id)
                    continue
                return self._refused(snap.action, snap.id, exc.code or "conflict", exc.message)
            except Gone as exc:
                return self._refused(snap.action, snap.id, exc.code or "gone", exc.message)
            return snap.id, claim.args

    async def _wait(self, snap: Snapshot, seconds: float) -> Snapshot:
        try:
            return await _thread(self.client.wait, snap.id, seconds)
        except anyio.get_cancelled_exc_class():
            # The agent gave up on the call: withdraw the request (SDK semantics).
            with anyio.CancelScope(shield=True), contextlib.suppress(InterlockError):
                await _thread(self.client.cancel, snap.id,
                              "the MCP client cancelled the call while it waited")
            raise

    def _still_pending(self, snap: Snapshot) -> types.CallToolResult:
        link = self.gating.link(snap.id)
        return text_result(
            f"interlock: `{snap.action}` is waiting for a reviewer (request {snap.id}, review "
            f"at {link}). It did not run yet. Call the tool again later with the same "
            f'arguments plus "{RESUME_ARG}": "{snap.id}" to pick up the decision.',
            meta={"request_id": snap.id, "state": "pending", "link": link},
        )

    def _refused(self, action: str, rid: str, state: str, reason: str) -> types.CallToolResult:
        words = {
            "denied": "denied", "suggested": "passed to people as a suggestion (only a person "
            "may carry it out)", "expired": "not decided in time and expired",
            "changes_requested": "sent back by a reviewer who asked for changes",
            "cancelled": "cancelled", "already_claimed": "already claimed by another call",
        }.get(state, f"not runnable ({state})")
        because = f": {reason}" if reason else ""
        return text_result(
            f"interlock: `{action}` was {words} (request {rid}){because}. It did not run.",
            meta={"request_id": rid, "state": state, "reason": reason,
                  "link": self.gating.link(rid)},
        )

    async def _run(self, ctx: Ctx, rid: str, name: str, args: dict[str, Any]
                   ) -> types.CallToolResult:
        async def relay(progress: float, total: float | None, message: str | None) -> None:
            await ctx.session.report_progress(progress, total, message)

        try:
            result = await self.downstream.call_tool(name, args, progress_callback=relay)
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                await self._report(rid, "failed", f"{type(exc).__name__}: {exc}"[:2000])
            raise
        if not isinstance(result, types.CallToolResult):  # pragma: no cover - claimed shapes
            await self._report(rid, "failed", "the tool answered with an unexpected shape")
            return text_result(f"interlock: `{name}` answered with an unexpected result")
        summary = " ".join(c.text for c in result.content if isinstance(c, types.TextContent))
        await self._report(rid, "failed" if result.is_error else "succeeded",
                           summary[:2000] or None)
        return result

    async def _report(self, rid: str, status: Any, summary: str | None) -> None:
        try:
            await _thread(self.client.outcome, rid, status, summary)
        except InterlockError as exc:
            log.warning("interlock: could not report the outcome of %s: %s", rid, exc)


async def _thread(fn: Callable[..., T], *args: Any) -> T:
    return await anyio.to_thread.run_sync(lambda: fn(*args))


def build_server(gate: GatedTools, init: types.InitializeResult) -> Server[Any]:
    """A lowlevel server that mirrors the downstream's capabilities and gates its tools."""
    down = gate.downstream
    resources = init.capabilities.resources is not None
    prompts = init.capabilities.prompts is not None

    async def list_resources(ctx: Ctx, params: types.PaginatedRequestParams | None
                             ) -> types.ListResourcesResult:
        return await down.list_resources(params=params)

    async def list_templates(ctx: Ctx, params: types.PaginatedRequestParams | None
                             ) -> types.ListResourceTemplatesResult:
        return await down.list_resource_templates(params=params)

    async def read_resource(ctx: Ctx, params: types.ReadResourceRequestParams
                            ) -> types.ReadResourceResult:
        return await down.read_resource(str(params.uri))

    async def list_prompts(ctx: Ctx, params: types.PaginatedRequestParams | None
                           ) -> types.ListPromptsResult:
        return await down.list_prompts(params=params)

    async def get_prompt(ctx: Ctx, params: types.GetPromptRequestParams
                         ) -> types.GetPromptResult | types.InputRequiredResult:
        return await down.get_prompt(params.name, params.arguments)

    info = init.server_info
    server: Server[Any] = Server(
        info.name, version=info.version, title=info.title, instructions=init.instructions,
        on_list_tools=gate.list_tools, on_call_tool=gate.call_tool,
        # Only what the downstream offers, so the capabilities the client sees are its own.
        on_list_resources=list_resources if resources else None,
        on_list_resource_templates=list_templates if resources else None,
        on_read_resource=read_resource if resources else None,
        on_list_prompts=list_prompts if prompts else None,
        on_get_prompt=get_prompt if prompts else None,
    )
    return server


@contextlib.asynccontextmanager
async def downstream(command: Sequence[str]) -> AsyncIterator[
    tuple[ClientSession, types.InitializeResult]
]:
    """Start the downstream MCP server (COMMAND) and connect to it over stdio."""
    if not command:
        raise InterlockError("no downstream command: give it after `--`")
    params = StdioServerParameters(command=command[0], args=list(command[1:]),
                                   env=dict(os.environ))
    async with stdio_client(params, errlog=sys.stderr) as (read, write), \
            ClientSession(read, write) as session:
        init = await session.initialize()
        yield session, init


async def serve(client: Client, command: Sequence[str], gating: Gating, *,
                listen: tuple[str, int] | None = None) -> None:
    """Run the gateway: stdio by default, streamable HTTP at `/mcp` with `listen`."""
    async with downstream(command) as (session, init):
        gate = GatedTools(client, session, gating, server_name=init.server_info.name)
        server = build_server(gate, init)
        if listen is None:
            from mcp.server.stdio import stdio_server

            async with stdio_server() as (read, write):
                await server.run(read, write, server.create_initialization_options())
            return
        import uvicorn

        host, port = listen
        app = server.streamable_http_app(host=host)
        config = uvicorn.Config(app, host=host, port=port, log_level="warning",
                                lifespan="on")
        print(f"interlock mcp-proxy listening at http://{host}:{port}/mcp", file=sys.stderr,
              flush=True)
        await uvicorn.Server(config).serve()
