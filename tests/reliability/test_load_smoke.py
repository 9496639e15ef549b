"""Load suite, small subset: 200 agents long-polling at once plus a steady submit stream, on
one server and on two sharing PostgreSQL (the full run is `python -m bench.load`).

No error responses, every waiter parked at once, waiters woken by decisions (on PostgreSQL
through the other server), and each server's RSS grows by less than RSS_BOUND_MIB.
"""

from __future__ import annotations

import pytest
from bench.load import run, table

WAITERS = 200
SECONDS = 10.0
#: Largest RSS growth allowed over the run, per server.
RSS_BOUND_MIB = 30


@pytest.mark.parametrize("setup", ["one-sqlite", pytest.param("two-postgres",
                                                              marks=pytest.mark.postgres)])
def test_waiters_and_stream(setup: str) -> None:
    result = run(setup, waiters=WAITERS, seconds=SECONDS, rate=20.0)
    shown = table([result]) + "\n" + "\n".join(result.counts.notes)
    assert result.counts.errors == 0, shown
    assert result.peak_waiting == WAITERS, shown
    assert result.counts.wakeups > 0 and result.counts.decisions > 0, shown
    assert result.growth_kib < RSS_BOUND_MIB * 1024, shown
