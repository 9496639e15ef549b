"""Fuzzing the MCP gateway's message handling: random and malformed JSON-RPC, odd tool calls,
oversized (10 MB) and deeply nested arguments.

In-process, lines go into the gateway's server as its stdio transport hands them on (a
message, or the exception for a line that is not one), in front of the real downstream test
server. Every request is answered once with its id, a line that is no message gets a
JSON-RPC error (id null when it cannot be read), notifications and responses are never
answered, a JSON-RPC error leaves the store as it was, and a gated call never runs
downstream without a decision. Once for real: `interlock mcp-proxy` over stdio.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Any

import anyio
import mcp_types as types
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from mcp.client._memory import InMemoryTransport
from mcp.client.session import ClientSession
from mcp.shared.message import SessionMessage
from tests.integrations import mcp_destructive_server as downstream

from interlock.integrations.mcp_proxy import (
    RESUME_ARG,
    AnsweringMalformed,
    GatedTools,
    Gating,
    Incoming,
    build_server,
)
from interlock.sdk import Gate, WebChannel
from interlock.store import State, Store, open_store

# A failing example is written as a patch with libcst, whose import warns; importing it
# quietly keeps a real failure a failure and not an INTERNALERROR under `-W error`.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    with contextlib.suppress(ImportError):
        import hypothesis.extra._patching  # noqa: F401

HERE = Path(__file__).parent
INTERLOCK = [sys.executable, "-c", "from interlock.cli import entrypoint; entrypoint()"]
POLICY = """\
version: 1
defaults: {decision: allow, approvers: [on-call]}
rules:
  - name: destructive-tools-wait-for-people
    match: {capabilities: destructive}
    decision: require_approval
  - name: never-touch-etc
    match: {action: delete_file, args.path: "/etc/*"}
    decision: deny
"""
FUZZ = settings(max_examples=80, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TEN_MB = 10 * 1024 * 1024

# --- the gateway in-process ----------------------------------------------------------------------


def call(rid: Any, name: Any, arguments: Any) -> str:
    """A `tools/call` line."""
    return json.dumps({"jsonrpc": "2.0", "id": rid, "method": "tools/call",
                       "params": {"name": name, "arguments": arguments}})


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@dataclass
class Wire:
    """Lines into the gateway, as its stdio transport hands them on; answers out."""

    to_proxy: anyio.abc.ObjectSendStream[Incoming]
    from_proxy: anyio.abc.ObjectReceiveStream[SessionMessage]
    pings: int = 0

    async def send(self, line: str) -> None:
        try:  # what `mcp.server.stdio` does with each line
            item: Incoming = SessionMessage(
                types.jsonrpc_message_adapter.validate_json(line, by_name=False))
        except Exception as exc:
            item = exc
        await self.to_proxy.send(item)

    async def _answer(self) -> dict[str, Any]:
        message = await self.from_proxy.receive()
        answer: dict[str, Any] = json.loads(
            message.message.model_dump_json(by_alias=True, exclude_unset=True))
        return answer

    async def exchange(self, line: str) -> list[dict[str, Any]]:
        """Every answer to `line`. A request's own answer is awaited first (it runs as a
        task, so a later ping could overtake it); then a ping flushes out anything else."""
        answers: list[dict[str, Any]] = []
        await self.send(line)
        with anyio.fail_after(60):
            request = _as_request(line)
            if request is not None:
                answers.append(await self._answer())
            self.pings += 1
            sentinel = f"sentinel-{self.pings}"
            await self.send(json.dumps({"jsonrpc": "2.0", "id": sentinel, "method": "ping"}))
            while (answer := await self._answer()).get("id") != sentinel:
                answers.append(answer)
        return answers


def _as_request(line: str) -> types.JSONRPCRequest | None:
    try:
        message = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
    except Exception:
        return None
    return message if isinstance(message, types.JSONRPCRequest) else None


@asynccontextmanager
async def proxied(tmp: Path) -> AsyncIterator[Wire]:
    """The gateway (embedded, `--wait 0`) in front of the test server, handshake done."""
    (tmp / "policy.yaml").write_text(POLICY)
    downstream.COUNTS = tmp / "runs.json"
    gate = Gate.from_policy(str(tmp / "policy.yaml"), f"sqlite:///{tmp / 'il.db'}",
                            channel=WebChannel(), agent="mcp-proxy")
    try:
        async with InMemoryTransport(downstream.server) as (down_read, down_write), \
                ClientSession(down_read, down_write) as session:
            init = await session.initialize()
            tools = GatedTools(gate.client, session, Gating(wait=0),
                               server_name=init.server_info.name)
            server = build_server(tools, init)
            to_proxy, proxy_in = anyio.create_memory_object_stream[Incoming](16)
            proxy_out, from_proxy = anyio.create_memory_object_stream[SessionMessage](16)
            async with from_proxy, anyio.create_task_group() as tg:
                tg.start_soon(partial(server.run, AnsweringMalformed(proxy_in, proxy_out),
                                      proxy_out, server.create_initialization_options()))
                wire = Wire(to_proxy, from_proxy)
                [hello] = await wire.exchange(json.dumps({
                    "jsonrpc": "2.0", "id": 0, "method": "initialize",
                    "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                               "clientInfo": {"name": "fuzz", "version": "1"}}}))
                assert "result" in hello, hello
                assert await wire.exchange(json.dumps(
                    {"jsonrpc": "2.0", "method": "notifications/initialized"})) == []
                yield wire
                await to_proxy.aclose()  # end of input: the server returns
    finally:
        gate.close()


@dataclass
class Proxy:
    """The in-process gateway, driven from synchronous test code, and its store."""

    portal: BlockingPortal
    wire: Wire
    tmp: Path
    store: Store
    seen: set[str] = field(default_factory=set)

    def exchange(self, line: str) -> list[dict[str, Any]]:
        return self.portal.call(self.wire.exchange, line)

    def footprint(self) -> tuple[tuple[int, str], int]:
        """What any change to the store moves: the audit head and the number of requests."""
        return self.store.audit_head(), len(self.store.list_requests(limit=100_000))

    def runs(self) -> list[dict[str, Any]]:
        path = self.tmp / "runs.json"
        runs: list[dict[str, Any]] = json.loads(path.read_text()) if path.exists() else []
        return runs


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    tmp = tmp_path_factory.mktemp("mcp-fuzz")
    with start_blocking_portal() as portal, \
            portal.wrap_async_context_manager(proxied(tmp)) as wire:
        store = open_store(f"sqlite:///{tmp / 'il.db'}")
        try:
            yield Proxy(portal=portal, wire=wire, tmp=tmp, store=store)
        finally:
            store.close()


def assert_never_ran_undecided(proxy: Proxy) -> None:
    """Gated calls never ran (nobody decides here); each allowed call ran at most once."""
    runs = proxy.runs()
    assert [r for r in runs if r["tool"] == "delete_file"] == []
    requests = proxy.store.list_requests(limit=100_000)
    for request in requests:
        if request.action_name == "delete_file":
            assert request.state.value in ("pending", "denied"), request
    finished = [r for r in requests if r.action_name == "read_file"
                and r.state.value in ("succeeded", "failed")]
    assert len([r for r in runs if r["tool"] == "read_file"]) <= len(finished)


# --- strategies ----------------------------------------------------------------------------------

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**64), 2**64),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=10))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                  max_size=3),
    max_leaves=10,
)
METHODS = ["tools/list", "tools/call", "resources/list", "resources/read",
           "resources/templates/list", "prompts/list", "prompts/get", "ping", "initialize",
           "completion/complete", "logging/setLevel", "resources/subscribe",
           "notifications/cancelled", "notifications/progress", "notifications/initialized",
           "notifications/roots/list_changed"]
good_ids = st.one_of(st.integers(-(2**53), 2**53), st.text(max_size=8))
odd_ids = st.one_of(st.none(), st.booleans(), st.floats(allow_nan=False), json_values)
tool_arguments = st.one_of(
    st.fixed_dictionaries(
        {"path": st.one_of(st.sampled_from(["/etc/passwd", "/tmp/x", "notes.txt"]),
                           json_values)},
        optional={RESUME_ARG: st.one_of(st.text(max_size=30), json_values)}),
    st.dictionaries(st.text(max_size=8), json_values, max_size=3),
    json_values,
)
call_params = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(st.sampled_from(["read_file", "delete_file"]), st.text(max_size=10),
                          json_values),
        "arguments": tool_arguments,
        "_meta": st.one_of(st.fixed_dictionaries({"progressToken": good_ids}), json_values),
        "uri": st.one_of(st.just("notes://readme"), json_values),
        "requestId": st.one_of(good_ids, json_values),
    },
)
any_params = st.one_of(call_params, st.dictionaries(st.text(max_size=8), json_values,
                                                    max_size=3), json_values)
#: Well-formed requests and notifications with odd params, then anything shaped like one.
messages = st.one_of(
    st.fixed_dictionaries({"jsonrpc": st.just("2.0"), "id": good_ids,
                           "method": st.sampled_from(METHODS)}, optional={"params": call_params}),
    st.fixed_dictionaries({"jsonrpc": st.just("2.0"), "method": st.sampled_from(METHODS)},
                          optional={"params": any_params}),
    st.fixed_dictionaries(
        {},
        optional={"jsonrpc": st.one_of(st.just("2.0"), json_scalars),
                  "id": st.one_of(good_ids, odd_ids),
                  "method": st.one_of(st.sampled_from(METHODS), json_scalars),
                  "params": any_params, "result": json_values, "error": json_values}),
    json_values,
)


def valid_id(message: Any) -> str | int | None:
    rid = message.get("id") if isinstance(message, dict) else None
    return rid if isinstance(rid, str) or type(rid) is int else None


def expected_for_malformed(line: str) -> tuple[int, str | int | None] | None:
    """What JSON-RPC 2.0 wants back for a line that is no message: (code, id), or None."""
    try:
        message = json.loads(line)
    except (ValueError, RecursionError):
        return types.PARSE_ERROR, None
    if not isinstance(message, dict):
        return types.INVALID_REQUEST, None
    if "result" in message or "error" in message:
        return None  # a response: never answered
    if "id" not in message and isinstance(message.get("method"), str):
        return None  # a notification: never answered
    return types.INVALID_REQUEST, valid_id(message)


# --- properties ----------------------------------------------------------------------------------


def test_random_messages_are_answered_once_by_id_and_never_run_an_undecided_call(
    proxy: Proxy,
) -> None:
    @FUZZ
    @given(message=messages, cut=st.one_of(st.none(), st.integers(0, 200)))
    @example(message={"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": "x"},
             cut=None)
    @example(message=[{"jsonrpc": "2.0", "id": 1, "method": "ping"}], cut=None)
    @example(message={"jsonrpc": "2.0", "id": 9, "method": "tools/call",
                      "params": {"name": "delete_file", "arguments": {"path": "/tmp/x"}}},
             cut=None)
    @example(message={"jsonrpc": "2.0", "id": "x", "method": "tools/call",
                      "params": {"name": "no_such_tool", "arguments": {}}}, cut=None)
    @example(message={"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                      "params": {"name": "delete_file",
                                 "arguments": {"path": "/tmp/x", RESUME_ARG: ["not", "an id"]}}},
             cut=None)
    @example(message={"jsonrpc": "2.0", "method": "notifications/cancelled", "params": 5},
             cut=None)
    @example(message={"jsonrpc": "2.0", "id": 4, "result": "not an object"}, cut=None)
    @example(message={}, cut=None)
    def check(message: Any, cut: int | None) -> None:
        line = json.dumps(message)
        if cut is not None:
            line = line[:cut]
        before = proxy.footprint()
        answers = proxy.exchange(line)
        request = _as_request(line)
        if request is not None:
            [answer] = answers
            assert answer["id"] == request.id
            assert ("result" in answer) != ("error" in answer), answer
        else:
            try:
                parsed = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
            except Exception:
                expected = expected_for_malformed(line)
                assert [(a["error"]["code"], a["id"]) for a in answers] == (
                    [] if expected is None else [expected]), (line, answers)
            else:  # a notification or a response from the client: no answer
                assert answers == [], (parsed, answers)
        for answer in answers:
            if "error" in answer:
                assert isinstance(answer["error"]["message"], str)
                assert "\n" not in answer["error"]["message"]
        if not answers or "error" in answers[0]:
            assert proxy.footprint() == before, (line, answers)
        if request is not None and request.method == "tools/call" and "result" in answers[0]:
            meta = (answers[0]["result"].get("_meta") or {}).get("interlock") or {}
            if "request_id" in meta:
                proxy.seen.add(meta["request_id"])

    check()
    assert_never_ran_undecided(proxy)


def test_gated_calls_with_odd_arguments_or_resume_ids_never_run(proxy: Proxy) -> None:
    pending = proxy.exchange(call(1, "delete_file", {"path": "/tmp/held"}))[0]["result"]
    held = pending["_meta"]["interlock"]["request_id"]
    ran = proxy.exchange(call(2, "read_file", {"path": "notes.txt"}))[0]["result"]
    assert not ran["isError"]
    done = next(r.id for r in proxy.store.list_requests(state=State.SUCCEEDED, limit=100_000)
                if r.action_name == "read_file")  # claimed and finished: never runs again

    @FUZZ
    @given(arguments=st.one_of(tool_arguments, st.fixed_dictionaries(
        {"path": st.text(max_size=12), RESUME_ARG: st.sampled_from([held, done, "nope"])})))
    @example(arguments={"path": "/tmp/held", RESUME_ARG: held})
    @example(arguments={"path": "/tmp/held", RESUME_ARG: done})
    @example(arguments={"path": "/etc/shadow"})
    def check(arguments: Any) -> None:
        before = proxy.footprint()
        [answer] = proxy.exchange(call("gated", "delete_file", arguments))
        assert answer["id"] == "gated"
        if "error" in answer:
            assert answer["error"]["code"] == types.INVALID_PARAMS
            assert proxy.footprint() == before
            return
        result = answer["result"]
        assert result["isError"] is True, result  # held, denied or refused: never ran
        state = ((result.get("_meta") or {}).get("interlock") or {}).get("state")
        assert state in (None, "pending", "denied"), result

    check()
    again = proxy.exchange(call(3, "read_file", {"path": "notes.txt", RESUME_ARG: done}))
    assert again[0]["result"]["isError"] is True  # claimed once already: not run twice
    assert_never_ran_undecided(proxy)


@pytest.mark.parametrize(
    ("line", "code", "rid"),
    [
        pytest.param(call(8, "delete_file", {"path": "/tmp/x", "blob": "x" * TEN_MB}),
                     types.INVALID_PARAMS, 8, id="10MB-gated-args"),
        pytest.param(call(8, "read_file", {"path": "x" * TEN_MB}), types.INVALID_PARAMS, 8,
                     id="10MB-allowed-args"),
        pytest.param(call(8, "x" * TEN_MB, {}), types.INVALID_PARAMS, 8, id="10MB-tool-name"),
        pytest.param(call(9, "delete_file", {"path": json.loads(nested(40))}),
                     types.INVALID_PARAMS, 9, id="args-40-deep"),
        pytest.param(call(9, "delete_file", {"path": json.loads(nested(31))}),
                     types.INVALID_PARAMS, 9, id="action-33-deep"),
        pytest.param(call(9, "delete_file", {}).replace("{}", f'{{"p": {nested(300)}}}'),
                     types.INVALID_REQUEST, 9, id="args-300-deep"),
        pytest.param(call(9, "delete_file", {}).replace("{}", f'{{"p": {nested(5000)}}}'),
                     types.PARSE_ERROR, None, id="args-5000-deep"),
        pytest.param(call(10, "read_file", {"path": "a"}).replace('"a"', "NaN"),
                     types.INVALID_PARAMS, 10, id="NaN"),
        pytest.param(call(10, "read_file", {"path": "a"}).replace('"a"', "-Infinity"),
                     types.INVALID_PARAMS, 10, id="Infinity"),
        pytest.param(call(11, "read_file", {"path": "a"}).replace('"a"', '"\\ud800"'),
                     types.INVALID_REQUEST, 11, id="lone-surrogate"),
        pytest.param(call(12, "no_such_tool", {}), types.INVALID_PARAMS, 12, id="unknown-tool"),
        pytest.param(call(12, "", {}), types.INVALID_PARAMS, 12, id="empty-tool-name"),
        pytest.param(call(13, "read_file", [1, 2]), types.INVALID_PARAMS, 13, id="args-a-list"),
        pytest.param('{"jsonrpc": "2.0", "id": 14, "method": "tools/call", "params": "x"}',
                     types.INVALID_REQUEST, 14, id="params-a-string"),
        pytest.param('[{"jsonrpc": "2.0", "id": 15, "method": "ping"}]',
                     types.INVALID_REQUEST, None, id="batch"),
        pytest.param('{"jsonrpc": "1.0", "id": 16, "method": "ping"}', types.INVALID_REQUEST,
                     16, id="old-jsonrpc"),
        pytest.param("not json", types.PARSE_ERROR, None, id="not-json"),
        pytest.param("", types.PARSE_ERROR, None, id="empty-line"),
        pytest.param('{"jsonrpc": "2.0", "id": 17, "method": "nope/nope"}',
                     types.METHOD_NOT_FOUND, 17, id="unknown-method"),
    ],
)
def test_malformed_oversized_and_deep_messages_get_one_error_and_store_nothing(
    proxy: Proxy, line: str, code: int, rid: str | int | None
) -> None:
    before = proxy.footprint()
    answers = proxy.exchange(line)
    assert [(a.get("error", {}).get("code"), a["id"]) for a in answers] == [(code, rid)], answers
    message = answers[0]["error"]["message"]
    assert message and "\n" not in message and len(message) < 300, message
    assert proxy.footprint() == before
    assert_never_ran_undecided(proxy)


@pytest.mark.parametrize("rid", [None, 1.5, True, {"a": 1}, [1]])
def test_a_call_whose_id_is_no_id_is_a_notification_and_never_runs(proxy: Proxy,
                                                                   rid: Any) -> None:
    # The SDK reads it so (JSON-RPC would want an error with id null); either way no
    # answer can carry such an id, and nothing may run or be stored for it.
    before = proxy.footprint()
    assert proxy.exchange(call(rid, "delete_file", {"path": "/tmp/x"})) == []
    assert proxy.exchange(call(rid, "read_file", {"path": "x"})) == []
    assert proxy.footprint() == before
    assert_never_ran_undecided(proxy)


def test_arguments_just_inside_the_limits_are_gated_as_usual(proxy: Proxy) -> None:
    deep = json.loads(nested(30))  # the action is level 1, its args 2: 32 levels in all
    [answer] = proxy.exchange(call(20, "delete_file", {"path": deep}))
    assert answer["result"]["_meta"]["interlock"]["state"] == "pending"
    [answer] = proxy.exchange(call(21, "read_file", {"path": "x" * (1024 * 1024 - 200)}))
    assert answer["result"]["isError"] is False
    assert_never_ran_undecided(proxy)


# --- once for real, over stdio -------------------------------------------------------------------


class Lines:
    """The gateway's stdout, a line at a time, with a timeout."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.lines: queue.Queue[bytes] = queue.Queue()
        self.pump = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self.pump.start()

    def _pump(self, stream: IO[bytes]) -> None:
        for line in stream:
            self.lines.put(line)

    def next(self) -> dict[str, Any]:
        answer: dict[str, Any] = json.loads(self.lines.get(timeout=60))
        return answer

    def close(self) -> None:
        """After the process ended: the pump has read to the end."""
        self.pump.join(timeout=10)
        self.stream.close()


def test_the_stdio_transport_answers_malformed_lines(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(POLICY)
    db = f"sqlite:///{tmp_path / 'il.db'}"
    cmd = [*INTERLOCK, "mcp-proxy", "--policy", str(tmp_path / "policy.yaml"), "--db", db,
           "--wait", "0", "--", sys.executable, str(HERE / "mcp_destructive_server.py")]
    env = {**os.environ, "MCP_TEST_COUNTS": str(tmp_path / "runs.json")}
    with (tmp_path / "proxy.err").open("w") as err:
        proc = subprocess.Popen(cmd, cwd=tmp_path, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=err, env=env)
    assert proc.stdin is not None and proc.stdout is not None
    answers = Lines(proc.stdout)

    def send(line: str | bytes) -> None:
        assert proc.stdin is not None
        proc.stdin.write((line.encode() if isinstance(line, str) else line) + b"\n")
        proc.stdin.flush()

    def ask(line: str | bytes) -> tuple[int | None, Any]:
        send(line)
        answer = answers.next()
        return answer.get("error", {}).get("code"), answer["id"]

    try:
        send(json.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "fuzz", "version": "1"}}}))
        assert "result" in answers.next()
        send('{"jsonrpc": "2.0", "method": "notifications/initialized"}')
        assert ask("not json") == (types.PARSE_ERROR, None)
        assert ask(b'\xff\xfe{"jsonrpc": "2.0", "id": 1, "method": "ping"}') == (
            types.PARSE_ERROR, None)
        assert ask('[{"jsonrpc": "2.0", "id": 2, "method": "ping"}]') == (
            types.INVALID_REQUEST, None)
        assert ask('{"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": "x"}') == (
            types.INVALID_REQUEST, 7)
        assert ask(call(8, "delete_file", {"path": "/tmp/x", "blob": "x" * TEN_MB})) == (
            types.INVALID_PARAMS, 8)
        assert ask(call(9, "delete_file", {}).replace("{}", f'{{"p": {nested(300)}}}')) == (
            types.INVALID_REQUEST, 9)
        assert ask(call(9, "delete_file", {}).replace("{}", f'{{"p": {nested(5000)}}}')) == (
            types.PARSE_ERROR, None)
        assert ask(call(10, "no_such_tool", {})) == (types.INVALID_PARAMS, 10)
        send('{"jsonrpc": "2.0", "method": "notifications/cancelled", "params": "x"}')
        assert ask('{"jsonrpc": "2.0", "id": 11, "method": "ping"}') == (None, 11)
        send(call(12, "read_file", {"path": "fine"}))
        ok = answers.next()
        assert ok["id"] == 12 and ok["result"]["isError"] is False, ok
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        answers.close()
    err_text = (tmp_path / "proxy.err").read_text()
    assert "Traceback" not in err_text, err_text
    store = open_store(db)
    try:
        [request] = store.list_requests(limit=10)  # only the well-formed call was stored
        assert (request.action_name, request.state.value) == ("read_file", "succeeded")
    finally:
        store.close()
    assert json.loads((tmp_path / "runs.json").read_text()) == [
        {"tool": "read_file", "args": {"path": "fine"}}]
