"""Store benchmark: full request cycles per second against plain insert transactions, per backend.

Run `python -m bench.store [--seconds S] [--pg URL] [--no-pg] [--only cycles|verify]`; the anchor
is measured in the same run, on the same database, with the same durability settings. Also times
`audit verify`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from interlock.policy.records import (
    Decision,
    Gate,
    OnTimeout,
    PolicyResult,
    Requirements,
    Risk,
    Stage,
)
from interlock.store import Reviewer, Store, open_store

LEAD = Reviewer(name="lena", groups=("tech-lead",))
RESULT = PolicyResult(
    decision=Decision.REQUIRE_APPROVAL, rules=("production-approval",),
    reasons=("rule production-approval",), risk=Risk.HIGH, policy_hash="p" * 64,
    requirements=Requirements(gates=(Gate(
        source="production-approval",
        stages=(Stage(name="approval", approvers=("tech-lead",)),),
        timeout=3600, on_timeout=OnTimeout.DENY, approval_ttl=900),)),
)
PLAIN = sa.Table("bench_plain", sa.MetaData(),
                 sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                 sa.Column("payload", sa.Text, nullable=False))


def cycle(store: Store, agent: str, n: int) -> None:
    """submit -> approve vote -> claim -> outcome, each a transaction with its audit entries."""
    action = {"action": "deploy", "args": {"service": "api", "n": n},
              "environment": "production", "reason": "release 1.2.3"}
    r = store.submit(agent=agent, action=action, result=RESULT)
    store.vote(r.id, reviewer=LEAD, verdict="approve", version=r.version)
    store.claim(r.id, agent=agent, lease=600)
    store.outcome(r.id, agent=agent, status="succeeded", summary="deployed")


def plain_insert(store: Store, _agent: str, n: int) -> None:
    """One single-row insert transaction, through the same engine and writer."""
    with store.backend.write_lock(), store.engine.begin() as conn:
        conn.execute(PLAIN.insert().values(payload=f"row {n} " + "x" * 200))


def count(store: Store, op: Callable[[Store, str, int], None], workers: int,
          seconds: float, offset: int) -> tuple[int, float]:
    """(operations done, elapsed seconds) with `workers` threads for about `seconds`."""
    stop = time.perf_counter() + seconds
    counts = [0] * workers

    def work(w: int) -> None:
        n = 0
        while time.perf_counter() < stop:
            op(store, f"agent-{w}", offset + w * 10_000_000 + n)
            n += 1
        counts[w] = n

    start = time.perf_counter()
    threads = [threading.Thread(target=work, args=(w,)) for w in range(workers)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return sum(counts), time.perf_counter() - start


def rates(store: Store, workers: int, seconds: float, slices: int = 10) -> tuple[float, float]:
    """(plain inserts/s, cycles/s), measured in alternating slices so both see the same
    machine: a shared host's noise then cancels out of the ratio."""
    done = {"plain": [0, 0.0], "cycle": [0, 0.0]}
    for i in range(slices):
        for name, op in (("plain", plain_insert), ("cycle", cycle)):
            n, elapsed = count(store, op, workers, seconds / slices, i * 1_000_000)
            done[name][0] += n
            done[name][1] += elapsed
    return (done["plain"][0] / done["plain"][1], done["cycle"][0] / done["cycle"][1])


def fill_audit(store: Store, entries: int) -> None:
    """Append synthetic entries through the store's own write path, in large transactions."""
    batch = 10_000
    for start in range(0, entries, batch):
        with store._write() as tx:
            for i in range(start, min(start + batch, entries)):
                tx.audit("reviewer:lena", "vote", {"verdict": "approve", "note": f"ok {i}",
                                                   "stages": ["production-approval/approval"]},
                         request_id="01HF7YAT00XKGYVVVA80NS4BQQ", digest="d" * 64)


@contextmanager
def sqlite_db() -> Iterator[tuple[str, dict[str, Any]]]:
    # On the working directory's disk, not a tmpfs: fsync must cost what it costs.
    folder = tempfile.mkdtemp(prefix="interlock-bench-", dir=".")
    try:
        yield f"sqlite:///{folder}/bench.db", {}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def pg_db(url: str) -> Iterator[tuple[str, dict[str, Any]]]:
    schema = f"il_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        yield url, {"options": f"-csearch_path={schema}"}
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


def bench(name: str, url: str, connect_args: dict[str, Any], seconds: float,
          verify_entries: int, only: str | None = None) -> list[str]:
    store = open_store(url, connect_args=connect_args)
    try:
        PLAIN.create(store.engine)
        lines = []
        for workers in (1, 8) if only != "verify" else ():
            plain, cycles = rates(store, workers, seconds)
            ratio = plain / cycles if cycles else float("inf")
            verdict = "ok" if ratio <= 6 else "MISSED"
            lines.append(f"| {name} | {workers} | {plain:,.0f} | {cycles:,.0f} | "
                         f"{ratio:.2f} | {verdict} (target <= 6) |")
        if only == "cycles":
            return lines
        fill_audit(store, verify_entries)
        total = store.audit_head()[0]
        per_s = 0.0
        for _ in range(3):  # best of three: what the walk can do, not what a neighbour left
            start = time.perf_counter()
            report = store.verify()
            elapsed = time.perf_counter() - start
            assert report.ok, report
            per_s = max(per_s, report.checked / elapsed)
        verdict = "ok" if per_s >= 200_000 else "MISSED"
        lines.append(f"| {name} | verify | {total:,} entries | {per_s:,.0f} entries/s | | "
                     f"{verdict} (target >= 200,000/s) |")
        return lines
    finally:
        store.close()


def run(seconds: float = 5.0, verify_entries: int = 300_000, pg: str | None = None,
        only: str | None = None) -> str:
    """Both backends' table (PostgreSQL skipped when `pg` is empty), as markdown; `only`
    ("cycles" or "verify") runs one part."""
    rows = ["| backend | workers | plain inserts/s | full cycles/s | inserts per cycle | |",
            "|---|---|---|---|---|---|"]
    with sqlite_db() as (url, ca):
        rows += bench("sqlite", url, ca, seconds, verify_entries, only)
    if pg:
        with pg_db(pg) as (url, ca):
            rows += bench("postgresql", url, ca, seconds, verify_entries, only)
    # On a shared host the anchor moves with the neighbours; the ratio is what to compare.
    rows.append("")
    rows.append(f"(cpus: {os.cpu_count()}, load average at the end: "
                f"{', '.join(f'{x:.1f}' for x in os.getloadavg())})")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    parser.add_argument("--verify-entries", type=int, default=300_000)
    parser.add_argument("--pg", default=os.environ.get(
        "INTERLOCK_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--no-pg", action="store_true")
    parser.add_argument("--only", choices=("cycles", "verify"),
                        help="run one part: the request cycles or audit verify")
    args = parser.parse_args()
    print(run(args.seconds, args.verify_entries, None if args.no_pg else args.pg, args.only))


if __name__ == "__main__":
    main()
