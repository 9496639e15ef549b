"""Crash suite: a real `interlock serve` killed with SIGKILL at random moments under load.

Agents submit (a mix the policy allows, notifies and gates), wait, claim and report; reviewers
decide; all over the HTTP API on loopback. The server is killed and restarted on the same
database and port again and again; afterwards the guarantees of SPEC §8 are checked against
what the clients were told. Run `python -m bench.chaos [--backend sqlite|postgres|both]`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from tests.server.servers import INTERLOCK, free_port, pg_schema

from interlock import Gate
from interlock.sdk.signals import AlreadyClaimed, Signal, StillPending
from interlock.store import open_store

#: The policy under test: short claim lease so a claim whose answer was lost ends `unknown`.
POLICY = """\
version: 1
defaults:
  decision: allow
  approvers: [ops]
  timeout: 1h
  on_timeout: deny
  approval_ttl: 1h
  claim_lease: 4s
escalation:
  novel_action: false
  novel_recipient: false
limits:
  pending_per_agent: 100000
  actions_per_minute: 10000000
rules:
  - name: gated
    match: {action: "chaos.gated"}
    decision: require_approval
    approvers: [ops]
  - name: told
    match: {action: "chaos.notify"}
    decision: notify
  - name: refused
    match: {action: "chaos.drop"}
    decision: deny
"""
ACTIONS = ("chaos.allowed", "chaos.gated", "chaos.gated", "chaos.notify", "chaos.drop")
CLAIMABLE = {"allowed", "notified", "approved"}
LEASE = 4.0
#: Seconds any one HTTP call may take; a server being killed answers nothing.
CALL_TIMEOUT = 5.0
#: Seconds the reviewers go on deciding after the agents have left.
TAIL = 2.0


class Violation(AssertionError):
    """A guarantee did not hold."""


@dataclass
class Ledger:
    """What the clients were told, shared by all their threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    submitted: dict[str, str] = field(default_factory=dict)
    """request id -> agent name."""
    finished: set[str] = field(default_factory=set)
    """Requests whose agent got its final answer."""
    decisions: list[tuple[str, str]] = field(default_factory=list)
    """(request id, verdict) a reviewer got a 200 for."""
    claims: list[str] = field(default_factory=list)
    """Request ids whose claim got a 200."""
    lost_claims: set[str] = field(default_factory=set)
    """Claims sent whose answer never came: left for the lease."""
    calls: int = 0
    refused: int = 0
    """Answers 5xx, or 4xx the flow does not explain."""
    notes: list[str] = field(default_factory=list)

    def add(self, attr: str, value: Any) -> None:
        with self.lock:
            target = getattr(self, attr)
            if isinstance(target, set):
                target.add(value)
            elif isinstance(target, dict):
                target.update(value)
            else:
                target.append(value)

    def odd(self, what: str) -> None:
        with self.lock:
            self.refused += 1
            if len(self.notes) < 20:
                self.notes.append(what)


class Down(Exception):
    """The server did not answer (killed, restarting)."""


class Api:
    """One client's HTTP calls, each bounded in time; a dropped connection is `Down`."""

    def __init__(self, url: str, token: str, ledger: Ledger) -> None:
        self.http = httpx.Client(base_url=url, timeout=CALL_TIMEOUT,
                                 headers={"Authorization": f"Bearer {token}"})
        self.ledger = ledger

    def call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        with self.ledger.lock:
            self.ledger.calls += 1
        try:
            r = self.http.request(method, path, **kw)
        except httpx.TransportError as exc:
            raise Down(str(exc)) from exc
        if r.status_code >= 500:
            self.ledger.odd(f"{method} {path} -> {r.status_code} {r.text[:200]}")
            raise Down(f"{r.status_code}")
        return r

    def close(self) -> None:
        self.http.close()


def _retry(stop: threading.Event, deadline: float, fn: Any) -> Any:
    """`fn()` until it answers, the run stops or the deadline passes (then None)."""
    for _ in range(10_000):
        if stop.is_set() or time.monotonic() > deadline:
            return None
        try:
            return fn()
        except Down:
            stop.wait(0.2)
    return None


def agent(name: str, api: Api, ledger: Ledger, stop: threading.Event, deadline: float,
          seed: int) -> None:
    """Submit, wait, claim once, report; until told to stop. Then submit one last gated
    action and walk away from it, as an agent process that dies while it waits: its ticket
    is left for `Gate.resume` once a reviewer has decided it."""
    rng = random.Random(seed)
    for n in range(100_000):
        if stop.is_set() or time.monotonic() > deadline:
            _walk_away(name, api, ledger, deadline)
            return
        body = {"action": rng.choice(ACTIONS), "args": {"n": n, "agent": name},
                "idempotency_key": uuid.uuid4().hex}  # reused by every retry below
        r = _retry(stop, deadline, lambda b=body: api.call("POST", "/v1/actions", json=b))
        if r is None:
            return
        if r.status_code != 200:
            ledger.odd(f"submit -> {r.status_code} {r.text[:200]}")
            continue
        rid, state = r.json()["id"], r.json()["state"]
        ledger.add("submitted", {rid: name})
        for _ in range(1_000):
            if state != "pending":
                break
            w = _retry(stop, deadline,
                       lambda rid=rid: api.call("GET", f"/v1/actions/{rid}/wait?timeout=2"))
            if w is None:
                return
            state = w.json()["state"]
        if state not in CLAIMABLE:
            ledger.add("finished", rid)  # denied: the answer is final
            continue
        try:
            c = api.call("POST", f"/v1/actions/{rid}/claim")
        except Down:
            ledger.add("lost_claims", rid)  # never re-claim blindly: the lease decides
            ledger.add("finished", rid)
            continue
        if c.status_code != 200:
            ledger.odd(f"claim {rid} in {state} -> {c.status_code} {c.text[:200]}")
            continue
        ledger.add("claims", rid)
        status = rng.choice(("succeeded", "succeeded", "failed"))
        o = _retry(stop, deadline + LEASE, lambda rid=rid, s=status: api.call(
            "POST", f"/v1/actions/{rid}/outcome", json={"status": s, "summary": "chaos"}))
        if o is not None and o.status_code == 409:
            # Our outcome landed before the answer was lost, or the lease passed meanwhile.
            pass
        elif o is not None and o.status_code != 200:
            ledger.odd(f"outcome {rid} -> {o.status_code} {o.text[:200]}")
        ledger.add("finished", rid)


def _walk_away(name: str, api: Api, ledger: Ledger, deadline: float) -> None:
    body = {"action": "chaos.gated", "args": {"agent": name, "last": True},
            "idempotency_key": uuid.uuid4().hex}
    r = _retry(threading.Event(), deadline + TAIL,
               lambda: api.call("POST", "/v1/actions", json=body))
    if r is not None and r.status_code == 200:
        ledger.add("submitted", {r.json()["id"]: name})


def reviewer(api: Api, ledger: Ledger, stop: threading.Event, deadline: float,
             seed: int, tail: threading.Event | None = None) -> None:
    """Approve most and deny some of what the queue shows; once `tail` is set (the agents
    have left), approve everything, so that every walked-away ticket has an answer to
    resume."""
    rng = random.Random(seed)
    for _ in range(100_000):
        if stop.is_set() or time.monotonic() > deadline:
            return
        try:
            q = api.call("GET", "/v1/queue?kind=approval")
        except Down:
            stop.wait(0.2)
            continue
        items = q.json() if q.status_code == 200 else []
        items = items.get("items", []) if isinstance(items, dict) else items
        if not items:
            stop.wait(0.05)
            continue
        for item in items[:10]:
            tailing = tail is not None and tail.is_set()
            verdict = "approve" if tailing or rng.random() < 0.8 else "deny"
            body = {"verdict": verdict, "version": item.get("version"), "note": "chaos"}
            try:
                d = api.call("POST", f"/v1/actions/{item['id']}/decision", json=body)
            except Down:
                break  # answer lost: the decision may or may not stand; not counted
            if d.status_code == 200:
                ledger.add("decisions", (item["id"], verdict))
            elif d.status_code != 409:  # 409: another reviewer got there first
                ledger.odd(f"decision -> {d.status_code} {d.text[:200]}")


class Serve:
    """`interlock serve` on a fixed port, killed and restarted on the same database."""

    def __init__(self, cwd: Path, db: str, port: int | None = None) -> None:
        self.cwd, self.db = cwd, db
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, timeout: float = 30.0) -> float:
        """Start and wait for /healthz; the seconds it took."""
        began = time.monotonic()
        self.starts += 1
        log = self.cwd / "serve.err"
        with log.open("ab") as err:
            self.proc = subprocess.Popen(
                [*INTERLOCK, "serve", "--db", self.db, "--policy", str(self.cwd / "policy.yaml"),
                 "--port", str(self.port)], cwd=self.cwd, stdout=subprocess.DEVNULL, stderr=err)
        deadline = began + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Violation(f"serve exited {self.proc.returncode} on start {self.starts}: "
                                + log.read_text()[-2000:])
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return time.monotonic() - began
            time.sleep(0.05)
        raise Violation("serve did not come up: " + log.read_text()[-2000:])

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Result:
    """One backend's run."""

    backend: str
    kills: int
    seconds: float
    requests: int = 0
    decisions: int = 0
    claims: int = 0
    lost_claims: int = 0
    resumed: int = 0
    calls: int = 0
    restart_s: float = 0.0
    violations: list[str] = field(default_factory=list)


@contextlib.contextmanager
def database(backend: str, tmp: Path) -> Iterator[str]:
    """A fresh `--db` URL for the backend."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp / 'chaos.db'}"
        return
    with pg_schema() as url:
        yield url


def _tokens(db: str, agents: int, reviewers: int) -> tuple[list[tuple[str, str]], list[str]]:
    store = open_store(db)
    try:
        agent_tokens = [(f"agent-{i}", store.create_token(
            kind="agent", name=f"agent-{i}", actor="chaos")[1]) for i in range(agents)]
        reviewer_tokens = [store.create_token(
            kind="reviewer", name=f"reviewer-{i}", groups=["ops"], actor="chaos")[1]
            for i in range(reviewers)]
    finally:
        store.close()
    return agent_tokens, reviewer_tokens


def run(backend: str, *, kills: int = 30, seconds: float | None = None, agents: int = 6,
        reviewers: int = 2, seed: int = 1, uptime: tuple[float, float] = (0.2, 1.2)) -> Result:
    """One backend: load, `kills` SIGKILLs at random moments, then every check."""
    rng = random.Random(seed)
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="interlock-chaos-") as name, \
            database(backend, Path(name)) as db:
        tmp = Path(name)
        (tmp / "policy.yaml").write_text(POLICY)
        server = Serve(tmp, db)
        restarts: list[float] = [server.start()]
        agent_tokens, reviewer_tokens = _tokens(db, agents, reviewers)
        ledger, stop, agents_stop = Ledger(), threading.Event(), threading.Event()
        budget = seconds if seconds is not None else kills * 10.0 + 60.0
        deadline = time.monotonic() + budget
        apis: list[Api] = []
        threads: list[threading.Thread] = []
        for i, (who, token) in enumerate(agent_tokens):
            apis.append(Api(server.url, token, ledger))
            threads.append(threading.Thread(target=agent, name=who, daemon=True, args=(
                who, apis[-1], ledger, agents_stop, deadline, seed * 1000 + i)))
        agent_threads = list(threads)
        for i, token in enumerate(reviewer_tokens):
            apis.append(Api(server.url, token, ledger))
            threads.append(threading.Thread(target=reviewer, daemon=True, args=(
                apis[-1], ledger, stop, deadline + TAIL, seed * 2000 + i, agents_stop)))
        for t in threads:
            t.start()
        done = 0
        try:
            for _ in range(kills):
                if time.monotonic() > deadline:
                    break
                time.sleep(rng.uniform(*uptime))
                server.kill()
                done += 1
                time.sleep(rng.uniform(0.0, 0.3))
                restarts.append(server.start())
            time.sleep(1.0)  # let the clients finish what they started after the last restart
        finally:
            agents_stop.set()  # each agent leaves one ticket behind
            for t in agent_threads:
                t.join(timeout=CALL_TIMEOUT * 3)
            time.sleep(TAIL)  # the reviewers decide what the agents left
            stop.set()
            for t in threads:
                t.join(timeout=CALL_TIMEOUT * 3)
            for api in apis:
                api.close()
        result = Result(backend=backend, kills=done, seconds=0.0)
        try:
            time.sleep(LEASE + 2.0)  # lost claims pass their lease; the sweeper runs each second
            result.resumed = _resume_all(server.url, agent_tokens, ledger, tmp, result)
        finally:
            server.stop()
        _check(db, tmp, ledger, result)
        if ledger.refused:
            result.violations.append(f"{ledger.refused} error responses: {ledger.notes[:5]}")
        result.requests = len(ledger.submitted)
        result.decisions = len(ledger.decisions)
        result.claims = len(ledger.claims)
        result.lost_claims = len(ledger.lost_claims)
        result.calls = ledger.calls
        result.restart_s = sum(restarts) / len(restarts)
    result.seconds = time.monotonic() - began
    return result


def _resume_all(url: str, agent_tokens: list[tuple[str, str]], ledger: Ledger, tmp: Path,
                result: Result) -> int:
    """Every ticket whose agent did not get its answer: `Gate.resume` must answer it."""
    tokens = dict(agent_tokens)
    resumed = 0
    for rid, who in sorted(ledger.submitted.items()):
        if rid in ledger.finished:
            continue
        with Gate.connect(url, token=tokens[who], state_dir=tmp / "sdk" / who) as gate:
            try:
                got = gate.resume(rid, wait=False)
            except StillPending:
                continue  # still waiting for a person: resumable later
            except AlreadyClaimed:
                result.violations.append(f"{rid}: resume says claimed, but no claim was sent")
                continue
            except Signal:
                continue  # denied and the like: that is its answer
            gate.report(got.id, "succeeded", "resumed after the run")
            ledger.add("claims", rid)
            resumed += 1
    return resumed


def _check(db: str, tmp: Path, ledger: Ledger, result: Result) -> None:
    """SPEC §8 against the database, with the server stopped."""
    bad = result.violations
    store = open_store(db)
    try:
        history: dict[str, list[str]] = {}
        replayed: dict[str, str] = {}
        for entry in store.audit_entries():
            if entry.event.startswith("state.") and entry.request_id is not None:
                rid = entry.request_id
                if replayed.get(rid, "submitted") != entry.data["from"]:
                    bad.append(f"{rid}: audit jumps from {replayed.get(rid, 'submitted')} "
                               f"to {entry.data['from']}")
                replayed[rid] = entry.data["to"]
                history.setdefault(rid, []).append(entry.data["to"])
        requests = {r.id: r for r in store.list_requests(limit=1_000_000)}
    finally:
        store.close()
    # No decided request lost.
    want = {"approve": "approved", "deny": "denied"}
    for rid, verdict in ledger.decisions:
        if want[verdict] not in history.get(rid, []):
            bad.append(f"{rid}: a reviewer was told `{verdict}` was recorded; it is not")
    # No action claimed twice.
    seen: set[str] = set()
    for rid in ledger.claims:
        if rid in seen:
            bad.append(f"{rid}: two claims got 200")
        seen.add(rid)
        if "executing" not in history.get(rid, []):
            bad.append(f"{rid}: a claim got 200 but no `executing` transition is stored")
    for rid, states in history.items():
        if states.count("executing") > 1:
            bad.append(f"{rid}: {states.count('executing')} `executing` transitions")
    # No request stuck without an audit explanation.
    for rid in ledger.submitted:
        if rid not in requests:
            bad.append(f"{rid}: the agent was given this id; the request is gone")
    for rid, r in requests.items():
        if r.state.value != replayed.get(rid, "submitted"):
            bad.append(f"{rid}: is {r.state.value}, its audit says {replayed.get(rid)}")
        if r.state.value == "executing":
            bad.append(f"{rid}: still executing after its lease passed")
    # Lost claims end as a person's question, or were never taken.
    for rid in ledger.lost_claims:
        state = requests[rid].state.value if rid in requests else "missing"
        if state not in {"unknown", "succeeded", "failed", *CLAIMABLE}:
            bad.append(f"{rid}: a claim whose answer was lost ended `{state}`")
    verify = subprocess.run([*INTERLOCK, "audit", "verify", "--db", db], cwd=tmp,
                            capture_output=True, text=True, timeout=120)
    if verify.returncode != 0:
        bad.append(f"interlock audit verify exited {verify.returncode}: "
                   f"{(verify.stdout + verify.stderr).strip()[:500]}")


def table(results: list[Result]) -> str:
    head = ("| backend | kills | requests | decisions acked | claims | lost claims | resumed "
            "| HTTP calls | mean restart s | run s | violations |")
    lines = [head, "|" + "---|" * 11]
    for r in results:
        lines.append(
            f"| {r.backend} | {r.kills} | {r.requests} | {r.decisions} | {r.claims} "
            f"| {r.lost_claims} | {r.resumed} | {r.calls} | {r.restart_s:.2f} "
            f"| {r.seconds:.0f} | {len(r.violations)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__)
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=None,
                        help="upper bound on each backend's run (default: 10 s per kill + 60)")
    parser.add_argument("--seed", type=int, default=int(os.environ.get("CHAOS_SEED", "1")))
    args = parser.parse_args(argv)
    backends = ("sqlite", "postgres") if args.backend == "both" else (args.backend,)
    results = [run(b, kills=args.kills, seconds=args.seconds, seed=args.seed)
               for b in backends]
    print(f"interlock chaos, seed {args.seed}, {os.cpu_count()} CPUs, Python "
          f"{sys.version.split()[0]}")
    print(table(results))
    failed = False
    for r in results:
        for v in r.violations:
            failed = True
            print(f"VIOLATION [{r.backend}] {v}")
    print("all guarantees held" if not failed else "guarantees violated")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
