"""Prometheus metrics at `/metrics`, written in the text exposition format by hand.

Counters are this process's; the pending gauge is read from the store at scrape time, so
every process behind a load balancer reports the same backlog.
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter

import sqlalchemy as sa

from interlock.store import Request, State, Store
from interlock.store import schema as tables

#: Upper bounds (seconds) of the time-to-decision histogram: a minute to a day.
BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 4 * 3600.0, 24 * 3600.0)


class Metrics:
    """What the server counts; `observe_*` are called from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.submitted: Counter[str] = Counter()
        self.states: Counter[str] = Counter()
        self.http: Counter[tuple[str, int]] = Counter()
        self._bucket_counts = [0] * (len(BUCKETS) + 1)
        self._sum = 0.0
        self._count = 0

    def observe_submit(self, request: Request) -> None:
        with self._lock:
            self.submitted[request.decision.value] += 1
            self.states[request.state.value] += 1

    def observe_change(self, request: Request) -> None:
        """A request changed (vote, claim, outcome...); time a decision made by people."""
        with self._lock:
            self.states[request.state.value] += 1
            if (request.state in (State.APPROVED, State.DENIED, State.CHANGES_REQUESTED)
                    and request.decided_at is not None):
                took = max(0.0, request.decided_at - request.created_at)
                self._bucket_counts[bisect.bisect_left(BUCKETS, took)] += 1
                self._sum += took
                self._count += 1

    def observe_http(self, method: str, status: int) -> None:
        with self._lock:
            self.http[(method, status)] += 1

    def render(self, store: Store) -> str:
        """The exposition text."""
        pending = _count_pending(store)
        with self._lock:
            lines = [
                "# HELP interlock_requests_submitted_total Requests submitted, by policy decision.",
                "# TYPE interlock_requests_submitted_total counter",
                *(f'interlock_requests_submitted_total{{decision="{d}"}} {n}'
                  for d, n in sorted(self.submitted.items())),
                "# HELP interlock_request_transitions_total Requests entering each state.",
                "# TYPE interlock_request_transitions_total counter",
                *(f'interlock_request_transitions_total{{state="{s}"}} {n}'
                  for s, n in sorted(self.states.items())),
                "# HELP interlock_time_to_decision_seconds From submission to a person's "
                "decision.",
                "# TYPE interlock_time_to_decision_seconds histogram",
            ]
            cumulative = 0
            for bound, n in zip(BUCKETS, self._bucket_counts, strict=False):
                cumulative += n
                lines.append(
                    f'interlock_time_to_decision_seconds_bucket{{le="{bound:g}"}} {cumulative}'
                )
            lines += [
                f'interlock_time_to_decision_seconds_bucket{{le="+Inf"}} {self._count}',
                f"interlock_time_to_decision_seconds_sum {self._sum:.3f}",
                f"interlock_time_to_decision_seconds_count {self._count}",
                "# HELP interlock_pending_requests Requests waiting for people now.",
                "# TYPE interlock_pending_requests gauge",
                f"interlock_pending_requests {pending}",
                "# HELP interlock_http_responses_total HTTP responses, by method and status.",
                "# TYPE interlock_http_responses_total counter",
                *(f'interlock_http_responses_total{{method="{m}",status="{s}"}} {n}'
                  for (m, s), n in sorted(self.http.items())),
            ]
        return "\n".join(lines) + "\n"


def _count_pending(store: Store) -> int:
    # A read: the store has per-agent counts only, so count across agents here.
    q = sa.select(sa.func.count()).select_from(tables.requests).where(
        tables.requests.c.state == State.PENDING.value
    )
    with store.engine.connect() as conn:
        return int(conn.execute(q).scalar_one())
