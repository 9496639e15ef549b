"""The MCP gateway: an MCP server in front of another one, gating each `tools/call` by policy.

Tools, resources and prompts pass through unchanged; a call becomes an action (tool name,
arguments, risk from the tool's annotations), waits for people when the policy says so
(sending progress notifications), runs downstream at most once, and its outcome is reported.
A call that cannot become an action, and a line that is no JSON-RPC message, get a JSON-RPC
error and leave the store as it was.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import anyio
import mcp_types as types
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.shared._stream_protocols import ReadStream, WriteStream
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage
from pydantic import ValidationError

from interlock import jsonvalue
from interlock.errors import BadInput, Conflict, Gone, InterlockError, TooLarge
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
Incoming = SessionMessage | Exception


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

    async def _known(self, name: str) -> bool:
        if name not in self.annotations:
            cursor: str | None = None
            while True:  # a call before any listing, or a new tool: list the tools again
                page = await self._list(
                    types.PaginatedRequestParams(cursor=cursor) if cursor else None)
                cursor = page.next_cursor
                if not cursor:
                    break
        return name in self.annotations

    async def call_tool(self, ctx: Ctx, params: types.CallToolRequestParams
                        ) -> types.CallToolResult:
        """Gate one call. A call that cannot become an action (an unknown tool, arguments
        the gateway would refuse) is a JSON-RPC error before anything is stored."""
        args = dict(params.arguments or {})
        resume = args.pop(RESUME_ARG, None)
        name = params.name
        if resume is not None and not isinstance(resume, str):
            raise MCPError(types.INVALID_PARAMS, f"`{RESUME_ARG}` must be the request id "
                           "(a string) interlock returned; nothing ran")
        if not await self._known(name):
            raise MCPError(types.INVALID_PARAMS, f"unknown tool `{shown(name)}`; nothing ran")
        try:  # what the gateway would refuse, refused before anything is stored
            jsonvalue.check({"action": name, "args": args}, max_bytes=jsonvalue.MAX_BODY)
        except (BadInput, TooLarge) as exc:
            raise MCPError(types.INVALID_PARAMS, f"the arguments of `{shown(name)}` are "
                           f"refused: {exc.message}; nothing ran") from None
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
        hint, caps = risk_of(self.annotations.get(name))
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


def shown(text: str, limit: int = 80) -> str:
    """User text for one line of a message: escaped, and cut short when long."""
    quoted = json.dumps(text[:limit])[1:-1]
    return quoted + "..." if len(text) > limit else quoted


def malformed_reply(exc: Exception) -> types.JSONRPCError | None:
    """The JSON-RPC answer to a line that is not a message; None where none is due.

    Requests get an error with their id when it can be read (null when not); responses
    and notifications are never answered. The id comes from the parser's own account of
    the line: the raw line when it is not JSON to it (its nesting limit is lower than
    Python's), else the whole object, which a `missing` field error carries."""
    if not isinstance(exc, ValidationError):
        return None
    errors = exc.errors()
    raw: Any = None
    found = False
    for error in errors:
        if error["type"] == "json_invalid" or len(error["loc"]) == 1 or (
            error["type"] == "missing" and len(error["loc"]) == 2
        ):
            raw, found = error["input"], True
            break
    if not found:
        return None  # every member rejected a field of its own: a response-shaped object
    if errors[0]["type"] == "json_invalid":
        said = errors[0]["msg"]  # `Invalid JSON: ... at line 1 column 247`
        try:
            raw = json.loads(raw)
        except (ValueError, RecursionError, TypeError):
            return _reply(None, types.PARSE_ERROR, f"parse error: {said}")
        if isinstance(raw, dict) and _request_id(raw) is not None:
            # JSON to Python, not to the SDK: nested too deeply, or a lone surrogate.
            return _reply(_request_id(raw), types.INVALID_REQUEST, f"invalid request: {said}")
    if not isinstance(raw, dict):
        return _reply(None, types.INVALID_REQUEST,
                      "invalid request: a message must be one JSON object (no batches)")
    if "result" in raw or "error" in raw:
        return None
    if "id" not in raw and isinstance(raw.get("method"), str):
        return None  # a malformed notification: JSON-RPC never answers one
    rid = _request_id(raw)
    problems = sorted({
        f"`{'.'.join(str(p) for p in e['loc'][1:]) or 'message'}`: {e['msg'].lower()}"
        for e in errors if e["loc"][:1] == ("JSONRPCRequest",)
    })
    detail = "; ".join(problems[:3]) or "not a JSON-RPC 2.0 request"
    return _reply(rid, types.INVALID_REQUEST, f"invalid request: {detail}")


def _request_id(message: dict[str, Any]) -> str | int | None:
    rid = message.get("id")
    return rid if isinstance(rid, str) or (type(rid) is int) else None


def _reply(rid: str | int | None, code: int, message: str) -> types.JSONRPCError:
    return types.JSONRPCError(jsonrpc="2.0", id=rid,
                              error=types.ErrorData(code=code, message=message))


class AnsweringMalformed:
    """The client's messages, each line that is not one answered here and left out.

    The SDK's transports hand such a line on as an exception, which the server only logs:
    a client whose request did not parse would wait for its answer forever."""

    def __init__(self, read: ReadStream[Incoming], write: WriteStream[SessionMessage]) -> None:
        self.read = read
        self.write = write

    @property
    def last_context(self) -> Any:
        """The sender's context of the last message, as the SDK's own streams carry it."""
        return getattr(self.read, "last_context", None)

    async def receive(self) -> Incoming:
        while True:
            item = await self.read.receive()
            if not isinstance(item, Exception):
                return item
            reply = malformed_reply(item)
            log.info("interlock: a message from the client is not JSON-RPC (%s)",
                     "answered" if reply is not None else "ignored")
            if reply is not None:
                await self.write.send(SessionMessage(reply))

    async def aclose(self) -> None:
        await self.read.aclose()

    def __aiter__(self) -> AnsweringMalformed:
        return self

    async def __anext__(self) -> Incoming:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> AnsweringMalformed:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()


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
    if shutil.which(command[0]) is None:
        raise BadInput(f"cannot start the downstream MCP server: `{command[0]}` is not an "
                       "executable file or a command on PATH")
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
                await server.run(AnsweringMalformed(read, write), write,
                                 server.create_initialization_options())
            return
        import uvicorn

        host, port = listen
        app = server.streamable_http_app(host=host)
        config = uvicorn.Config(app, host=host, port=port, log_level="warning",
                                lifespan="on")
        print(f"interlock mcp-proxy listening at http://{host}:{port}/mcp", file=sys.stderr,
              flush=True)
        await uvicorn.Server(config).serve()
