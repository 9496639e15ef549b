"""Server benchmark: submits/s with durable SQLite audit vs a bare Starlette endpoint (and, to
show what the commit alone costs, the bare endpoint doing one durable insert), and the
commit-to-response delay of 500 waiting agents (SQLite, then two processes on PostgreSQL).

Run as `python -m bench.server` (`python -m bench.server waiters`: the waiter rows alone);
`run()` returns the markdown table. Every figure comes from one run, with the same uvicorn
settings and, for each part, the same load client: wrk for (a) where it is installed (`apt-get
install wrk`), else the raw asyncio HTTP/1.1 client that (b) and (c) always use. The servers of
(a) all run at once and are loaded in turn, in short slices, so that what a shared host's
neighbours do falls on the anchor and on interlock alike; the table shows each slice's ratio.
A waiter's delay runs from the moment the deciding server's commit returned (stamped in that
server, on the host's monotonic clock) to the moment the client read the waiter's answer;
decisions start once every waiter is parked.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from statistics import quantiles
from typing import Any

import httpx

CONNECTIONS = 32
SECONDS = 10.0
WAITERS = 500
DECIDERS = 8
PG_URL = os.environ.get("INTERLOCK_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")

POLICY = """version: 1
defaults: {approvers: [bench]}
escalation: {novel_action: false, novel_recipient: false}
limits: {pending_per_agent: 100000, actions_per_minute: 100000000}
rules:
  - name: reads
    match: {action: "read_*"}
    decision: allow
  - name: gated
    match: {action: "task.*"}
    decision: require_approval
    approvers: [bench]
"""


# --- servers (run in subprocesses) ---------------------------------------------------------


def _bare_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def bare(request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route("/bare", bare, methods=["GET", "POST"])])


def _insert_app(path: str) -> Any:
    """The bare endpoint plus one durable SQLite insert per request, with interlock's
    settings (WAL, synchronous=FULL), on the event loop: the cost of the commit alone."""
    import sqlite3

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")

    async def bare(request: Request) -> JSONResponse:
        body = await request.body()
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO t (body) VALUES (?)", (body.decode(),))
        db.execute("COMMIT")
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route("/bare", bare, methods=["GET", "POST"])])


def _fastapi_app() -> Any:
    from fastapi import FastAPI, Request  # type: ignore[import-not-found,unused-ignore]

    app = FastAPI()

    async def bare(request: Request) -> dict[str, bool]:
        await request.body()
        return {"ok": True}

    # Postponed annotations are strings FastAPI resolves in the module's globals, where this
    # local `Request` is not: it would read `request` as a query parameter and answer 422.
    bare.__annotations__ = {"request": Request, "return": dict[str, bool]}
    app.api_route("/bare", methods=["GET", "POST"])(bare)
    return app


def serve(kind: str, port: int, db: str, policy: str) -> None:
    """Entry point of a server subprocess."""
    import uvicorn

    if kind == "bare":
        app = _bare_app()
    elif kind == "insert":
        app = _insert_app(db)
    elif kind == "fastapi":
        app = _fastapi_app()
    else:
        from interlock.gateway import Gateway
        from interlock.policy import load_policy
        from interlock.server.app import create_app
        from interlock.server.settings import ServerSettings
        from interlock.store import open_store

        app = _timed(create_app(Gateway(load_policy(policy), open_store(db)), ServerSettings()))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _timed(app: Any) -> Any:
    """The interlock app plus what the client cannot see, served at `/bench/times`: when
    each vote's transaction returned from commit, when the hub heard of a change (on A in
    (c): the NOTIFY's arrival), and how many waiters are parked, i.e. past their first read
    and waiting for a wake (a subscribed waiter may still be reading). `perf_counter` is
    CLOCK_MONOTONIC, one clock for every process on the host, so these compare with the
    client's own."""
    hub = app.state.hub
    store = app.state.gateway.store
    commits: dict[str, float] = {}
    heard: dict[str, list[float]] = {}
    parked = [0]
    vote, local, subscribe = store.vote, hub._local, hub.subscribe

    def counted_subscribe(request_id: str) -> Any:
        event = subscribe(request_id)
        if "wait" not in vars(event):  # once per event; waiters on one id share it
            wait = event.wait

            async def counted_wait() -> Any:
                parked[0] += 1
                try:
                    return await wait()
                finally:
                    parked[0] -= 1

            event.wait = counted_wait
        return event

    def timed_vote(*args: Any, **kwargs: Any) -> Any:
        request = vote(*args, **kwargs)
        commits[request.id] = time.perf_counter()
        return request

    def timed_local(changes: Any) -> None:
        now = time.perf_counter()
        for change in changes:
            heard.setdefault(getattr(change, "id", change), []).append(now)
        local(changes)

    store.vote, hub._local, hub.subscribe = timed_vote, timed_local, counted_subscribe

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/bench/times":
            body = json.dumps({"commits": commits, "heard": heard,
                               "parked": parked[0]}).encode()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
        else:
            await app(scope, receive, send)

    return asgi


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proc:
    def __init__(self, kind: str, db: str = "", policy: str = "") -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        code = f"from bench.server import serve; serve({kind!r}, {self.port}, {db!r}, {policy!r})"
        self.proc = subprocess.Popen([sys.executable, "-c", code])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(self.url + ("/bare" if kind in ("bare", "insert", "fastapi")
                                       else "/healthz"))
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"{kind} server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def _token(db: str, kind: str, name: str) -> str:
    from interlock.store import open_store

    store = open_store(db)
    try:
        return store.create_token(kind=kind, name=name, groups=("bench",),  # type: ignore[arg-type]
                                  actor="bench")[1]
    finally:
        store.close()


# --- load ------------------------------------------------------------------------------------


class Conn:
    """A minimal keep-alive HTTP/1.1 client connection: httpx's pool, not the server, was the
    bottleneck at these rates, so the load client is as thin as asyncio allows."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"",
                      headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
        for k, v in (headers or {}).items():
            head += f"{k}: {v}\r\n"
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = next(int(x.split(":", 1)[1]) for x in lines
                      if x.lower().startswith("content-length:"))
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


WRK = shutil.which("wrk")


def throughput(url: str, path: str, body: dict[str, Any] | None,
               headers: dict[str, str], seconds: float = SECONDS) -> float:
    """Requests/s of one endpoint under CONNECTIONS keep-alive connections for `seconds`: with
    wrk where it is installed (a C client leaves the server more of the CPUs it shares),
    else with the asyncio client. Every answer must be a 200."""
    if WRK is None:
        return asyncio.run(_throughput(url, path, body, headers, seconds))
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "load.lua"
        lines = [f"wrk.method = {json.dumps('POST' if body is not None else 'GET')}"]
        if body is not None:
            lines.append(f"wrk.body = {json.dumps(json.dumps(body))}")
            lines.append('wrk.headers["Content-Type"] = "application/json"')
        lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
        script.write_text("\n".join(lines) + "\n")
        out = subprocess.run(
            [WRK, "-t1", f"-c{CONNECTIONS}", f"-d{seconds:g}s", "-s", str(script), url + path],
            capture_output=True, text=True, check=True).stdout
    assert "Non-2xx" not in out and "Socket errors" not in out, out
    rate = next(line for line in out.splitlines() if line.startswith("Requests/sec:"))
    return float(rate.split()[1])


async def _throughput(url: str, path: str, body: dict[str, Any] | None,
                      headers: dict[str, str], seconds: float) -> float:
    payload = json.dumps(body).encode() if body is not None else b""
    method = "POST" if body is not None else "GET"
    done = 0
    stop = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal done
        conn = Conn(url)
        try:
            while time.monotonic() < stop:
                status, text = await conn.request(method, path, payload, headers)
                assert status == 200, text
                done += 1
        finally:
            conn.close()

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
    return done / (time.monotonic() - started)


def _pct(values: list[float]) -> tuple[float, float]:
    cuts = quantiles(values, n=100)
    return cuts[49] * 1000, cuts[98] * 1000


async def _times(url: str) -> dict[str, Any]:
    conn = Conn(url)
    try:
        _, text = await conn.request("GET", "/bench/times")
    finally:
        conn.close()
    times: dict[str, Any] = json.loads(text)
    return times


@dataclass(kw_only=True)
class Delays:
    """One run of 500 waiters: where a decision's time goes, in ms (p50, p99)."""

    delay: tuple[float, float]
    """From the vote's commit returning on the deciding server to the waiter's answer."""
    heard: tuple[float, float]
    """From that commit to the waiters' server hearing of it (NOTIFY arrival in (c))."""
    anchor: tuple[float, float]
    """A bare round trip on the deciding server, interleaved with the decisions."""
    rate: float
    """Decisions per second: the load both were measured at."""


async def _waiters(submit_url: str, decide_url: str, agent: str, reviewer: str) -> Delays:
    ha = {"Authorization": f"Bearer {agent}"}
    hr = {"Authorization": f"Bearer {reviewer}"}
    setup = Conn(submit_url)
    ids = []
    for _ in range(WAITERS):
        _, text = await setup.request("POST", "/v1/actions", b'{"action": "task.run"}', ha)
        ids.append(json.loads(text)["id"])
    setup.close()
    answered: dict[str, float] = {}

    async def wait(rid: str) -> None:
        conn = Conn(submit_url)
        _, text = await conn.request("GET", f"/v1/actions/{rid}/wait?timeout=60", b"", ha)
        answered[rid] = time.perf_counter()
        conn.close()
        assert json.loads(text)["state"] == "approved", text

    tasks = [asyncio.create_task(wait(rid)) for rid in ids]
    deadline = time.monotonic() + 30
    while (await _times(submit_url))["parked"] < WAITERS:  # every waiter is parked
        assert time.monotonic() < deadline, "the waiters did not all park"
        await asyncio.sleep(0.05)
    rtts: list[float] = []
    queue = list(ids)

    async def decider() -> None:
        conn = Conn(decide_url)
        while queue:
            rid = queue.pop()
            _, text = await conn.request("POST", f"/v1/actions/{rid}/decision",
                                         b'{"verdict": "approve"}', hr)
            assert json.loads(text)["state"] == "approved", text
            t0 = time.perf_counter()
            await conn.request("GET", "/healthz")
            rtts.append(time.perf_counter() - t0)
        conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(decider() for _ in range(DECIDERS)))
    rate = WAITERS / (time.perf_counter() - started)
    await asyncio.gather(*tasks)
    committed = (await _times(decide_url))["commits"]
    heard = (await _times(submit_url))["heard"]
    delays = [answered[rid] - committed[rid] for rid in ids]
    # the first time the waiters' server heard of the decision (SQLite's audit tail also
    # hears of each submission)
    first = [min((t for t in heard[rid] if t >= committed[rid]), default=answered[rid])
             for rid in ids]
    # A waiter answering before the commit returned would break the contract, save the
    # SQLite audit tail hearing of a commit in the instant before `vote` returns.
    early = [d for d in delays if d < 0]
    assert len(early) <= WAITERS // 100, f"{len(early)} waiters answered before the commit"
    heard_after = [t - committed[rid] for t, rid in zip(first, ids, strict=True)]
    return Delays(delay=_pct(delays), heard=_pct(heard_after), anchor=_pct(rtts),
                  rate=rate)


# --- the run -----------------------------------------------------------------------------------


def _pg_schema_url() -> tuple[str, Any]:
    import sqlalchemy as sa

    schema = f"il_bench_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")

    def drop() -> None:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        engine.dispose()

    return f"{PG_URL}?options=-csearch_path%3D{schema}", drop


def _ms(p: tuple[float, float]) -> str:
    return f"p50 {p[0]:.1f} ms, p99 {p[1]:.1f} ms"


def _sqlite_rows(d: Delays) -> list[tuple[str, str, str]]:
    return [
        (f"(b) {WAITERS} waiters, SQLite: commit → waiter answered", _ms(d.delay),
         f"{d.delay[1] / d.anchor[1]:.2f}× anchor p99 (target ≤ 3×)"),
        (f"(b) anchor: bare round trip at the same load ({d.rate:,.0f} decisions/s)",
         _ms(d.anchor), "1.00×"),
    ]


def _postgres(policy: str) -> list[tuple[str, str, str]]:
    """(c): waiters on server A, decisions on server B, one PostgreSQL schema."""
    from interlock.store import open_store

    try:
        pg, drop = _pg_schema_url()
    except Exception as exc:
        return [("(c) PostgreSQL", f"unreachable: {type(exc).__name__}", "–")]
    try:
        open_store(pg).close()
        pa, pr = _token(pg, "agent", "bench-bot"), _token(pg, "reviewer", "rev")
        a, b = Proc("interlock", pg, policy), Proc("interlock", pg, policy)
        try:
            d = asyncio.run(_waiters(a.url, b.url, pa, pr))
        finally:
            a.stop()
            b.stop()
    finally:
        drop()
    return [
        (f"(c) {WAITERS} waiters on A, decisions on B (PostgreSQL)", _ms(d.delay),
         f"{d.delay[1] / d.anchor[1]:.2f}× anchor p99 (target ≤ 3×)"),
        ("(c) of which: commit on B → NOTIFY heard on A", _ms(d.heard), "–"),
        (f"(c) anchor: bare round trip on B at the same load ({d.rate:,.0f} decisions/s)",
         _ms(d.anchor), "1.00×"),
    ]


@contextmanager
def _setup() -> Iterator[tuple[str, str, str, str, str]]:
    """(folder, policy file, SQLite URL, agent token, reviewer token) for one run."""
    with tempfile.TemporaryDirectory() as tmp:
        policy = str(Path(tmp) / "policy.yaml")
        Path(policy).write_text(POLICY)
        db = f"sqlite:///{tmp}/bench.db"
        from interlock.store import open_store

        open_store(db).close()
        yield tmp, policy, db, _token(db, "agent", "bench-bot"), _token(db, "reviewer", "rev")


def run_waiters() -> str:
    """(b) and (c) alone: `python -m bench.server waiters`."""
    with _setup() as (_tmp, policy, db, agent, reviewer):
        server = Proc("interlock", db, policy)
        try:
            rows = _sqlite_rows(asyncio.run(_waiters(server.url, server.url, agent, reviewer)))
        finally:
            server.stop()
        rows += _postgres(policy)
    table = ["| what | result | vs anchor |", "|---|---|---|"]
    table += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return f"uvicorn, 1 worker each; {os.cpu_count()} CPUs; the client shares them\n\n" + \
        "\n".join(table)


#: (a) runs each server for SECONDS in all, in this many slices taken in turn, so that a
#: neighbour's burst on the shared host lands on every row alike instead of on one.
SLICES = 5


def run() -> str:
    rows: list[tuple[str, str, str]] = []
    with _setup() as (tmp, policy, db, agent, reviewer):
        try:
            import fastapi  # noqa: F401

            has_fastapi = True
        except ImportError:
            has_fastapi = False
        body = {"action": "read_x"}
        loads: dict[str, tuple[Proc, str, dict[str, str]]] = {}
        try:
            loads["bare"] = (Proc("bare"), "/bare", {})
            if has_fastapi:
                loads["fastapi"] = (Proc("fastapi"), "/bare", {})
            loads["insert"] = (Proc("insert", f"{tmp}/insert.db"), "/bare", {})
            loads["interlock"] = (Proc("interlock", db, policy), "/v1/actions",
                                  {"Authorization": f"Bearer {agent}"})
            rates: dict[str, list[float]] = {name: [] for name in loads}
            for _ in range(SLICES):
                for name, (proc, path, headers) in loads.items():
                    rates[name].append(throughput(proc.url, path, body, headers,
                                                  SECONDS / SLICES))
        except BaseException:
            for proc, _path, _headers in loads.values():
                proc.stop()
            raise
        for name, (proc, _path, _headers) in loads.items():
            if name != "interlock":
                proc.stop()
        rate = {name: sum(r) / len(r) for name, r in rates.items()}
        anchor = rate["bare"]
        rows.append(("(a) bare Starlette JSON endpoint (anchor)", f"{anchor:,.0f} req/s", "1.00×"))
        if has_fastapi:
            rows.append(("(a) bare FastAPI endpoint", f"{rate['fastapi']:,.0f} req/s",
                         f"{rate['fastapi'] / anchor:.2f}×"))
        else:
            rows.append(("(a) bare FastAPI endpoint", "not installed", "–"))
        rows.append(("(a) bare Starlette + one durable SQLite insert (WAL, synchronous=FULL)",
                     f"{rate['insert']:,.0f} req/s", f"{rate['insert'] / anchor:.2f}×"))
        sub = rate["interlock"]
        spread = ", ".join(f"{i / a:.2f}" for i, a in zip(rates["interlock"], rates["bare"],
                                                          strict=True))
        rows.append(("(a) interlock submit, allowed, audit in SQLite", f"{sub:,.0f} req/s",
                     f"{sub / anchor:.2f}× (target ≥ 0.40×; slices: {spread})"))
        server = loads["interlock"][0]
        try:
            waited = asyncio.run(_waiters(server.url, server.url, agent, reviewer))
        finally:
            server.stop()
        rows += _sqlite_rows(waited)
        rows += _postgres(policy)
    client = ("wrk (1 thread)" if WRK is not None
              else "a raw asyncio HTTP/1.1 keep-alive client (install wrk for a lighter one)")
    head = (f"uvicorn, 1 worker each; load for (a): {client}, {CONNECTIONS} keep-alive "
            f"connections, {SECONDS:g} s per row in {SLICES} slices taken in turn with the "
            f"other rows; for (b) and (c): the asyncio client; "
            f"{os.cpu_count()} CPUs; the client shares them\n\n")
    table = ["| what | result | vs anchor |", "|---|---|---|"]
    table += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return head + "\n".join(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("part", nargs="?", choices=("waiters",),
                        help="only the waiters' part ((b) and (c))")
    print(run_waiters() if parser.parse_args().part == "waiters" else run())


if __name__ == "__main__":
    main()
