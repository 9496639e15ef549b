"""Load suite: many agents long-polling `/wait` at once plus a steady submit stream.

First one `interlock serve` on SQLite, then two on one PostgreSQL (each waiter woken by a
decision cast through the other server). Reports each server's RSS at start and end, error
responses and throughput. Run `python -m bench.load [--waiters 1000] [--seconds 60]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from tests.server.servers import Server, pg_schema

from interlock.store import open_store

POLICY = """\
version: 1
defaults:
  decision: allow
  approvers: [ops]
  timeout: 1h
  on_timeout: deny
  approval_ttl: 1h
  claim_lease: 10m
escalation:
  novel_action: false
  novel_recipient: false
limits:
  pending_per_agent: 100000
  actions_per_minute: 10000000
rules:
  - name: gated
    match: {action: "load.gated"}
    decision: require_approval
    approvers: [ops]
"""
#: Agents the waiters are spread over.
AGENTS = 20
#: Seconds each `/wait` long-poll asks for.
WAIT = 20.0


def rss_kib(pid: int) -> int:
    """VmRSS of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


@dataclass
class Counts:
    """What the clients saw."""

    submits: int = 0
    decisions: int = 0
    wakeups: int = 0
    polls: int = 0
    claims: int = 0
    errors: int = 0
    notes: list[str] = field(default_factory=list)

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.notes) < 10:
            self.notes.append(what)


@dataclass
class Result:
    """One setup's run."""

    setup: str
    waiters: int
    seconds: float
    rss_start: list[int]
    rss_end: list[int]
    counts: Counts
    peak_waiting: int

    @property
    def growth_kib(self) -> int:
        return max(e - s for s, e in zip(self.rss_start, self.rss_end, strict=True))


class Load:
    """The clients: waiters, a submit stream and a reviewer, over one or more servers."""

    def __init__(self, urls: list[str], agent_tokens: list[str], reviewer_token: str,
                 counts: Counts) -> None:
        # One client (one connection pool) per agent token, as each agent host would have:
        # httpcore rescans its whole pool on every request, in quadratic time, so one pool
        # holding all 1,000 long-polls stalled this loop for up to a minute, and the polls
        # sent after the stall went out on connections the server had closed as idle.
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        self.clients = {token: httpx.AsyncClient(timeout=WAIT + 15.0, limits=limits)
                        for token in [*agent_tokens, reviewer_token]}
        self.urls, self.agents, self.reviewer = urls, agent_tokens, reviewer_token
        self.counts = counts
        self.to_decide: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
        self.waiting = 0
        self.peak = 0
        self.end = 0.0
        """When the clients stop (monotonic seconds)."""

    async def call(self, method: str, url: str, token: str,
                   json: object = None) -> dict[str, object] | None:
        try:
            r = await self.clients[token].request(
                method, url, json=json, headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError as exc:
            self.counts.error(f"{method} {url}: {type(exc).__name__} {exc}")
            return None
        if r.status_code != 200:
            self.counts.error(f"{method} {url} -> {r.status_code} {r.text[:200]}")
            return None
        body: dict[str, object] = r.json()
        return body

    async def waiter(self, i: int) -> None:
        """Submit a gated action, long-poll until decided, claim, report; again until `end`."""
        url = self.urls[i % len(self.urls)]
        token = self.agents[i % len(self.agents)]
        for _ in range(10_000):
            if time.monotonic() > self.end:
                return
            sub = await self.call("POST", url + "/v1/actions", token, {
                "action": "load.gated", "args": {"waiter": i},
                "idempotency_key": uuid.uuid4().hex})
            if sub is None:
                return
            self.counts.submits += 1
            rid = str(sub["id"])
            # A reviewer decides through another server than the one this waiter polls.
            self.to_decide.put_nowait((rid, i + 1))
            self.waiting += 1
            self.peak = max(self.peak, self.waiting)
            try:
                state = str(sub["state"])
                for _ in range(1_000):
                    if state != "pending" or time.monotonic() > self.end:
                        break
                    got = await self.call("GET", f"{url}/v1/actions/{rid}/wait?timeout={WAIT}",
                                          token)
                    if got is None:
                        return
                    self.counts.polls += 1
                    state = str(got["state"])
            finally:
                self.waiting -= 1
            if state == "pending":
                return
            self.counts.wakeups += 1
            if await self.call("POST", f"{url}/v1/actions/{rid}/claim", token) is None:
                return
            self.counts.claims += 1
            await self.call("POST", f"{url}/v1/actions/{rid}/outcome", token,
                            {"status": "succeeded", "summary": "load"})

    async def submitter(self, rate: float) -> None:
        """Allowed actions at a steady rate: submit, claim, report."""
        tick = 1.0 / rate
        nxt = time.monotonic()
        for n in itertools.count():
            if time.monotonic() > self.end or n > rate * 3600:
                return
            url, token = self.urls[n % len(self.urls)], self.agents[n % len(self.agents)]
            sub = await self.call("POST", url + "/v1/actions", token, {
                "action": "load.allowed", "args": {"n": n}, "idempotency_key": uuid.uuid4().hex})
            if sub is not None:
                self.counts.submits += 1
                rid = sub["id"]
                if await self.call("POST", f"{url}/v1/actions/{rid}/claim", token) is not None:
                    self.counts.claims += 1
                    await self.call("POST", f"{url}/v1/actions/{rid}/outcome", token,
                                    {"status": "succeeded"})
            nxt += tick
            await asyncio.sleep(max(0.0, nxt - time.monotonic()))

    async def deciding(self, rate: float) -> None:
        """Approve waiting requests at a steady rate, oldest first."""
        tick = 1.0 / rate
        nxt = time.monotonic()
        for _ in range(int(rate * 3600)):
            if time.monotonic() > self.end:
                return
            with contextlib.suppress(TimeoutError):
                rid, server = await asyncio.wait_for(self.to_decide.get(), 1.0)
                url = self.urls[server % len(self.urls)]
                got = await self.call("POST", f"{url}/v1/actions/{rid}/decision",
                                      self.reviewer, {"verdict": "approve", "note": "load"})
                if got is not None:
                    self.counts.decisions += 1
            nxt += tick
            await asyncio.sleep(max(0.0, nxt - time.monotonic()))


async def _drive(urls: list[str], pids: list[int], agents: list[str], reviewer: str,
                 waiters: int, seconds: float, rate: float) -> Result:
    counts = Counts()
    load = Load(urls, agents, reviewer, counts)
    load.end = time.monotonic() + seconds + 60.0
    tasks = [asyncio.create_task(load.waiter(i)) for i in range(waiters)]
    # The start figure is taken once every waiter is parked on `/wait` (or after 30 s).
    for _ in range(300):
        if load.peak >= waiters:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)
    rss_start = [rss_kib(p) for p in pids]
    began = time.monotonic()
    load.end = began + seconds
    tasks.append(asyncio.create_task(load.submitter(rate)))
    tasks.append(asyncio.create_task(load.deciding(rate)))
    # Waiters parked at the end are let go rather than waited out.
    await asyncio.wait(tasks, timeout=max(0.0, load.end - time.monotonic()) + 1.0)
    rss_end = [rss_kib(p) for p in pids]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for client in load.clients.values():
        await client.aclose()
    return Result(setup="", waiters=waiters, seconds=load.end - began,
                  rss_start=rss_start, rss_end=rss_end, counts=counts, peak_waiting=load.peak)


def _tokens(db: str) -> tuple[list[str], str]:
    store = open_store(db)
    try:
        agents = [store.create_token(kind="agent", name=f"load-{i}", actor="load")[1]
                  for i in range(AGENTS)]
        reviewer = store.create_token(kind="reviewer", name="load-reviewer", groups=["ops"],
                                      actor="load")[1]
    finally:
        store.close()
    return agents, reviewer


@contextlib.contextmanager
def _servers(tmp: Path, db: str, n: int) -> Iterator[list[Server]]:
    servers: list[Server] = []
    try:
        for _ in range(n):
            servers.append(Server(tmp, "--db", db, "--policy", str(tmp / "policy.yaml")).ready())
        yield servers
    finally:
        for s in servers:
            s.stop()


def run(setup: str, *, waiters: int = 1000, seconds: float = 60.0,
        rate: float = 20.0) -> Result:
    """`one-sqlite` (one server) or `two-postgres` (two servers, one database)."""
    with tempfile.TemporaryDirectory(prefix="interlock-load-") as name:
        tmp = Path(name)
        (tmp / "policy.yaml").write_text(POLICY)
        with contextlib.ExitStack() as stack:
            if setup == "one-sqlite":
                db, n = f"sqlite:///{tmp / 'load.db'}", 1
            else:
                db, n = stack.enter_context(pg_schema()), 2
            open_store(db).close()
            agents, reviewer = _tokens(db)
            servers = stack.enter_context(_servers(tmp, db, n))
            result = asyncio.run(_drive([s.url for s in servers], [s.proc.pid for s in servers],
                                        agents, reviewer, waiters, seconds, rate))
    result.setup = setup
    return result


def _mib(kib: Sequence[int]) -> str:
    return " / ".join(f"{x / 1024:.0f}" for x in kib)


def table(results: list[Result]) -> str:
    lines = ["| setup | waiters | s | submits/s | decisions/s | claims | wake-ups "
             "| RSS start MiB | RSS end MiB | errors |", "|" + "---|" * 10]
    for r in results:
        c = r.counts
        lines.append(
            f"| {r.setup} | {r.peak_waiting} | {r.seconds:.0f} | {c.submits / r.seconds:.1f} "
            f"| {c.decisions / r.seconds:.1f} | {c.claims} | {c.wakeups} | {_mib(r.rss_start)} "
            f"| {_mib(r.rss_end)} | {c.errors} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__)
    parser.add_argument("--waiters", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=20.0,
                        help="submits per second of the stream, and decisions per second")
    parser.add_argument("--setup", choices=("one-sqlite", "two-postgres", "both"),
                        default="both")
    args = parser.parse_args(argv)
    setups = ("one-sqlite", "two-postgres") if args.setup == "both" else (args.setup,)
    results = [run(s, waiters=args.waiters, seconds=args.seconds, rate=args.rate)
               for s in setups]
    print(f"interlock load, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print(table(results))
    errors = sum(r.counts.errors for r in results)
    for r in results:
        for note in r.counts.notes:
            print(f"ERROR [{r.setup}] {note}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
