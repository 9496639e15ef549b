"""SDK benchmark: the extra cost of `@gate.guard` on a call the policy allows (embedded mode,
audit written to SQLite), against the bare function and one plain durable SQLite insert.

Run as `python -m bench.sdk [--calls N]`; `run()` returns the markdown table. The anchor is
measured in the same run, in the same directory, with the store's durability settings (WAL and
the same `synchronous` level: `full` by default, as the store's, or `--synchronous normal`).
"""

from __future__ import annotations

import argparse
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


def _time(fn: Callable[[int], object], calls: int) -> float:
    """Best round's median µs per call (other load on the machine only ever adds time)."""
    best = float("inf")
    for _ in range(ROUNDS):
        samples = []
        for i in range(calls):
            t0 = perf_counter_ns()
            fn(i)
            samples.append(perf_counter_ns() - t0)
        best = min(best, median(samples) / 1000)
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

        bare_us = _time(lambda i: read_rows("users", i), calls)
        plain_us = _time(insert, calls)
        guard_us = _time(lambda i: guarded("users", i), calls)
        gateway_us = _time(gateway_only, calls)
        close()
        gate.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    overhead = guard_us - bare_us
    ratio = overhead / plain_us
    rows = [
        f"SDK guard overhead ({platform.python_implementation()} {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, WAL + synchronous={sync.upper()}, "
        f"median of {calls} calls, "
        f"best of {ROUNDS} rounds)",
        "",
        "| what | µs per call |",
        "|---|---:|",
        f"| bare function | {bare_us:,.1f} |",
        f"| one plain durable insert transaction | {plain_us:,.1f} |",
        f"| `@gate.guard`, policy allows (submit+claim, outcome; audited) | {guard_us:,.1f} |",
        f"| the same two gateway calls, without the SDK | {gateway_us:,.1f} |",
        f"| guard overhead (guarded − bare) | {overhead:,.1f} |",
        f"| of which the SDK's own (guarded − gateway calls − bare) "
        f"| {guard_us - gateway_us - bare_us:,.1f} |",
        f"| overhead ÷ plain insert (target ≤ 2) | {ratio:.2f} |",
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
