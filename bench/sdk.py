"""SDK benchmark: the extra cost of `@gate.guard` on a call the policy allows (embedded mode,
audit written to SQLite), against the bare function and one plain durable SQLite insert.

Run as `python -m bench.sdk [--calls N]`; `run()` returns the markdown table. The anchor is
measured in the same run, in the same directory, with the store's durability settings (WAL and
the same `synchronous` level: `full` by default, as the store's, or `--synchronous normal`).

The floor rows write the very rows a guarded call writes, by plain SQL with no interlock code
at all: what the database charges for a durable claim before the call and a durable outcome
after it, against which interlock's own overhead can be read.
"""

from __future__ import annotations

import argparse
import hashlib
import platform
import shutil
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path
from statistics import median
from time import perf_counter_ns

from interlock import Gate
from interlock.gateway import Principal

POLICY = """\
version: 1
defaults: {decision: allow, approvers: [ops]}
limits: {pending_per_agent: 100000, actions_per_minute: 100000000}
rules:
  - name: reads
    match: {action: read_rows}
    decision: allow
"""
ROUNDS = 5


def _time(fns: dict[str, Callable[[int], object]], calls: int) -> dict[str, float]:
    """Each one's best round's median µs per call (other load on the machine only ever adds
    time). The rounds take the functions in turn, so a burst on a shared host falls on the
    rows alike, and their differences stay meaningful."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(ROUNDS):
        for name, fn in fns.items():
            samples = []
            for i in range(calls):
                t0 = perf_counter_ns()
                fn(i)
                samples.append(perf_counter_ns() - t0)
            best[name] = min(best[name], median(samples) / 1000)
    return best


def _plain_insert(
    path: Path, sync: str
) -> tuple[Callable[[int], object], Callable[[], None]]:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={sync.upper()}")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, payload TEXT NOT NULL)")
    payload = "x" * 200

    def insert(i: int) -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (payload) VALUES (?)", (f"{i} {payload}",))
        conn.execute("COMMIT")

    return insert, conn.close


def _floor(store_db: Path, path: Path, sync: str) -> tuple[
        Callable[[int], object], Callable[[int], object], Callable[[], None]]:
    """The rows one guarded call writes, written by plain SQL and nothing else: on a copy of
    the store's database, the request as the store wrote it (new id and idempotency key), its
    three audit entries (submitted, allowed, executing) chained with sha256, and the chain
    head, in one transaction; then the outcome (the request's state, one entry, the head) in
    a second. What the database itself charges for the guarantees, without interlock's code.
    Returns (both transactions, the first alone, close)."""
    src = sqlite3.connect(store_db)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    src.backup(conn)
    src.close()
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={sync.upper()}")
    conn.row_factory = sqlite3.Row
    request = dict(conn.execute("SELECT * FROM requests ORDER BY id DESC LIMIT 1").fetchone())
    entries = [r["entry"] for r in conn.execute(
        "SELECT entry FROM audit WHERE request_id = ? ORDER BY seq", (request["id"],))]
    assert len(entries) == 4, entries  # submitted, allowed, executing, succeeded
    seq, head = conn.execute("SELECT seq, hash FROM audit_head").fetchone()
    chain = [seq, head]
    cols = list(request)
    insert = (f"INSERT INTO requests ({', '.join(cols)}) "
              f"VALUES ({', '.join(':' + c for c in cols)})")
    append = "INSERT INTO audit (seq, event, request_id, entry, prev_hash, hash) " \
             "VALUES (?, ?, ?, ?, ?, ?)"

    def audit(rid: str, event: str, entry: str) -> None:
        prev = chain[1]
        chain[0] += 1
        chain[1] = hashlib.sha256((prev + entry).encode()).hexdigest()
        conn.execute(append, (chain[0], event, rid, entry, prev, chain[1]))

    def submit(i: int) -> str:
        rid = f"FLOOR{i:08d}{perf_counter_ns():013d}"
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(insert, {**request, "id": rid, "idempotency_key": rid, "state": "executing"})
        for event, entry in zip(("submitted", "state.allowed", "state.executing"), entries,
                                strict=False):
            audit(rid, event, entry)
        conn.execute("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", chain)
        conn.execute("COMMIT")
        return rid

    def both(i: int) -> None:
        rid = submit(i)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE requests SET state = 'succeeded', version = version + 1, "
                     "lease_expires_at = NULL WHERE id = ? AND state = 'executing'", (rid,))
        audit(rid, "state.succeeded", entries[3])
        conn.execute("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", chain)
        conn.execute("COMMIT")

    return both, submit, conn.close


def _own(us: float) -> str:
    """The SDK's own share: a difference of two timings of two commits each, so within their
    noise (tens of µs) it is shown as such rather than as a cost below zero."""
    return f"{us:,.1f}" if us >= 0 else f"below the noise ({us:,.1f})"


def run(calls: int = 300, sync: str = "full") -> str:
    """Time bare, guarded and plain-insert calls; return the markdown table."""
    work = Path(tempfile.mkdtemp(prefix="interlock-bench-sdk-"))
    try:
        (work / "interlock.yaml").write_text(POLICY)
        gate = Gate.from_policy(work / "interlock.yaml",
                                db=f"sqlite:///{work / 'sdk.db'}?synchronous={sync}",
                                channel="web", agent="bench", state_dir=work / "state")

        def read_rows(table: str, limit: int = 10) -> int:
            return limit

        guarded = gate.guard(action="read_rows")(read_rows)
        guarded("warmup")
        insert, close = _plain_insert(work / "plain.db", sync)
        gateway = gate.client.gateway  # type: ignore[attr-defined]
        agent = Principal(role="agent", name="bench")

        def gateway_only(i: int) -> None:
            body = {"action": "read_rows", "args": {"table": "users", "limit": i},
                    "idempotency_key": f"g{i}-{perf_counter_ns()}"}
            done = gateway.submit(body, agent, claim=True)  # submit and claim: one commit
            gateway.outcome(done.request.id, agent, "succeeded")

        floor, floor_submit, floor_close = _floor(work / "sdk.db", work / "floor.db", sync)
        us = _time({"bare": lambda i: read_rows("users", i), "plain": insert,
                    "guard": lambda i: guarded("users", i), "gateway": gateway_only,
                    "floor": floor, "floor_submit": floor_submit}, calls)
        bare_us, plain_us, guard_us = us["bare"], us["plain"], us["guard"]
        gateway_us, floor_us, floor_submit_us = us["gateway"], us["floor"], us["floor_submit"]
        close()
        floor_close()
        gate.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    overhead = guard_us - bare_us
    ratio = overhead / plain_us
    rows = [
        f"SDK guard overhead ({platform.python_implementation()} {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, WAL + synchronous={sync.upper()}, "
        f"median of {calls} calls, "
        f"best of {ROUNDS} rounds taken in turn)",
        "",
        "| what | µs per call |",
        "|---|---:|",
        f"| bare function | {bare_us:,.1f} |",
        f"| one plain durable insert transaction | {plain_us:,.1f} |",
        f"| `@gate.guard`, policy allows (submit+claim, outcome; audited) | {guard_us:,.1f} |",
        f"| the same two gateway calls, without the SDK | {gateway_us:,.1f} |",
        f"| guard overhead (guarded − bare) | {overhead:,.1f} |",
        f"| of which the SDK's own (guarded − gateway calls − bare) "
        f"| {_own(guard_us - gateway_us - bare_us)} |",
        f"| overhead ÷ plain insert (target ≤ 2) | {ratio:.2f} |",
        f"| floor: the same rows by plain SQL, two transactions | {floor_us:,.1f} |",
        f"| floor: the first transaction alone (request, claim, 3 entries) "
        f"| {floor_submit_us:,.1f} |",
        f"| floor ÷ plain insert (two transactions; the first alone) "
        f"| {floor_us / plain_us:.2f}; {floor_submit_us / plain_us:.2f} |",
    ]
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--synchronous", choices=("full", "normal"), default="full")
    args = parser.parse_args()
    print(run(args.calls, args.synchronous))


if __name__ == "__main__":
    main()
