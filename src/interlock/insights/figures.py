"""Insight figures over a window: per rule, action or agent, per reviewer, and over time.

Pure functions of `history.Item`s, so every figure can be checked against a known history;
`report` reads the store once and assembles everything `/v1/insights` and the CLI show.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from interlock.errors import BadInput
from interlock.insights.history import Item, load, load_waiting_at
from interlock.policy import parse_duration
from interlock.store import Store

GroupBy = Literal["rule", "action", "agent"]
GROUPINGS: tuple[GroupBy, ...] = ("rule", "action", "agent")
#: The key of requests no rule decided (the baseline, escalation or scope did).
BASELINE = "(baseline)"
#: An approval cast sooner than this after submission counts as fast.
FAST_APPROVAL_SECONDS = 3.0
#: Upper edges of the time-to-decision histogram, in seconds, and their labels.
HISTOGRAM: tuple[tuple[float, str], ...] = (
    (3, "<3s"), (10, "3-10s"), (30, "10-30s"), (60, "30s-1m"), (300, "1-5m"),
    (1800, "5-30m"), (7200, "30m-2h"), (math.inf, ">2h"),
)
#: Bucket sizes for the series, smallest first; the first giving <= MAX_BUCKETS wins.
_BUCKETS = (60.0, 300.0, 900.0, 3600.0, 3 * 3600.0, 6 * 3600.0, 12 * 3600.0, 86400.0,
            7 * 86400.0, 30 * 86400.0)
MAX_BUCKETS = 48


#: The longest window figures are computed over, in seconds: a hundred years.
MAX_WINDOW = 36500 * 86400


def parse_window(text: str) -> float:
    """Seconds in a window like `7d`, `12h`, `30m`; BadInput otherwise."""
    seconds = parse_duration(text)
    if seconds is None or seconds <= 0:
        raise BadInput(f"a window is a number and a unit like `7d`, `12h` or `30m`, "
                       f"not `{text}`")
    if seconds > MAX_WINDOW:
        raise BadInput(f"a window is at most {MAX_WINDOW // 86400:.0f}d, not `{text}`")
    return seconds


def _rate(part: int, whole: int) -> float | None:
    return None if whole == 0 else part / whole


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (`q` in 0..1): a value that occurred, never an interpolation."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass(frozen=True, kw_only=True)
class Figures:
    """The figures of one group (a rule, an action, an agent, or everything)."""

    key: str
    """Rule name, action name, agent name, or `all`."""
    requests: int
    """Requests submitted in the window."""
    decisions: dict[str, int]
    """Requests per policy decision."""
    gated: int
    """Requests that waited for people (`require_approval`)."""
    pending: int
    """Of those, still waiting."""
    decided: int
    """Gated requests that were approved, denied, sent back, or timed out."""
    approved: int
    """Approved by people."""
    untouched: int
    """Approved with no edit and no note."""
    edited: int
    """Approved with edited args."""
    denied: int
    """Denied by people."""
    changes_requested: int
    """Sent back for changes."""
    timed_out: int
    """Expired, or approved or denied by a stage timeout."""
    approval_rate: float | None
    """approved / decided."""
    untouched_rate: float | None
    """untouched / decided."""
    edit_rate: float | None
    """edited / decided."""
    denial_rate: float | None
    """denied / decided."""
    timeout_rate: float | None
    """timed_out / decided."""
    median_seconds: float | None
    """Median time from submission to a person's decision."""
    p90_seconds: float | None
    """90th percentile (nearest rank) of the same."""
    unattended: int
    """Allowed or notified requests (they ran without waiting)."""
    unattended_reviewed: int
    """Of those, reviewed after running."""
    missed: int
    """Unattended requests a review flagged or reversed."""
    miss_rate: float | None
    """missed / unattended_reviewed."""
    reversal_base: int
    """Notified requests reviewed afterwards plus approved ones reviewed or rated."""
    reversed: int
    """Notified requests reversed, approved requests reversed or rated incorrect."""
    reversal_rate: float | None
    """reversed / reversal_base."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def figures(key: str, items: Iterable[Item]) -> Figures:
    """The figures of one group of requests."""
    items = list(items)
    decisions: dict[str, int] = defaultdict(int)
    count: dict[str, int] = defaultdict(int)
    times: list[float] = []
    untouched = edited = unattended = reviewed = missed = rev_base = reversed_ = 0
    for it in items:
        decisions[it.decision.value] += 1
        outcome = it.outcome
        count[outcome] += 1
        if it.untouched:
            untouched += 1
        if outcome == "approved" and (it.edited or any(v.edited for v in it.votes)):
            edited += 1
        seconds = it.seconds_to_decision
        if seconds is not None:
            times.append(seconds)
        bad_review = any(r in ("flagged", "reversed") for r in it.reviews)
        if outcome in ("allowed", "notified"):
            unattended += 1
            if it.reviews:
                reviewed += 1
                missed += bad_review
        if outcome == "notified" and it.reviews:
            rev_base += 1
            reversed_ += "reversed" in it.reviews
        elif outcome == "approved" and (it.reviews or it.ratings):
            rev_base += 1
            reversed_ += "reversed" in it.reviews or "incorrect" in it.ratings
    decided = sum(count[o] for o in ("approved", "denied", "changes_requested", "timed_out"))
    return Figures(
        key=key, requests=len(items), decisions=dict(sorted(decisions.items())),
        gated=decisions.get("require_approval", 0), pending=count["pending"], decided=decided,
        approved=count["approved"], untouched=untouched, edited=edited,
        denied=count["denied"], changes_requested=count["changes_requested"],
        timed_out=count["timed_out"],
        approval_rate=_rate(count["approved"], decided),
        untouched_rate=_rate(untouched, decided), edit_rate=_rate(edited, decided),
        denial_rate=_rate(count["denied"], decided),
        timeout_rate=_rate(count["timed_out"], decided),
        median_seconds=statistics.median(times) if times else None,
        p90_seconds=percentile(times, 0.9),
        unattended=unattended, unattended_reviewed=reviewed, missed=missed,
        miss_rate=_rate(missed, reviewed), reversal_base=rev_base, reversed=reversed_,
        reversal_rate=_rate(reversed_, rev_base),
    )


def keys_of(by: GroupBy) -> Callable[[Item], tuple[str, ...]]:
    """The group keys of a request: its rules (or the baseline), its action, its agent."""
    if by == "rule":
        return lambda it: it.rules or (BASELINE,)
    if by == "action":
        return lambda it: (it.action,)
    if by == "agent":
        return lambda it: (it.agent,)
    raise BadInput(f"`by` is one of rule, action, agent, not `{by}`")


def grouped(items: Iterable[Item], key: Callable[[Item], tuple[str, ...]]) -> list[Figures]:
    """Figures per group, the busiest first."""
    groups: dict[str, list[Item]] = defaultdict(list)
    for it in items:
        for k in key(it):
            groups[k].append(it)
    out = [figures(k, members) for k, members in groups.items()]
    return sorted(out, key=lambda f: (-f.requests, f.key))


@dataclass(frozen=True, kw_only=True)
class ReviewerFigures:
    """How one reviewer votes."""

    reviewer: str
    """Reviewer name."""
    votes: int
    """Votes cast in the window."""
    approvals: int
    """Of those, approvals."""
    fast_approvals: int
    """Approvals cast under FAST_APPROVAL_SECONDS after submission."""
    fast_share: float | None
    """fast_approvals / approvals."""
    median_seconds: float | None
    """Median seconds from submission to this reviewer's approvals."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def reviewers(items: Iterable[Item]) -> list[ReviewerFigures]:
    """Per reviewer: how many votes, and how quickly they approve."""
    votes: dict[str, int] = defaultdict(int)
    approve_times: dict[str, list[float]] = defaultdict(list)
    for it in items:
        for v in it.votes:
            votes[v.reviewer] += 1
            if v.verdict == "approve":
                approve_times[v.reviewer].append(max(0.0, v.at - it.created_at))
    out = []
    for name in sorted(votes):
        times = approve_times.get(name, [])
        fast = sum(1 for s in times if s < FAST_APPROVAL_SECONDS)
        out.append(ReviewerFigures(
            reviewer=name, votes=votes[name], approvals=len(times), fast_approvals=fast,
            fast_share=_rate(fast, len(times)),
            median_seconds=statistics.median(times) if times else None,
        ))
    return out


@dataclass(frozen=True, kw_only=True)
class Bucket:
    """One slice of the window."""

    start: float
    """Start of the slice (epoch seconds)."""
    approved: int
    """Requests people approved in it."""
    denied: int
    """Requests people denied in it."""
    other: int
    """Requests sent back or timed out in it."""
    queue_depth: int
    """The most requests waiting for people at any moment of the slice."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def bucket_size(window: float) -> float:
    """The smallest tidy slice that cuts the window into at most MAX_BUCKETS."""
    for size in _BUCKETS:
        if window / size <= MAX_BUCKETS:
            return size
    return window / MAX_BUCKETS


def series(items: Iterable[Item], waiting_before: Iterable[Item], *, since: float,
           until: float) -> list[Bucket]:
    """Approvals and denials per slice, and the peak queue depth in each slice."""
    size = bucket_size(until - since)
    n = max(1, math.ceil((until - since) / size))
    approved, denied, other = [0] * n, [0] * n, [0] * n
    queued: list[Item] = list(waiting_before)
    for it in items:
        if it.decision.value == "require_approval":
            queued.append(it)
        when = it.decided_at
        if when is None or not since <= when < until:
            continue
        i = min(n - 1, int((when - since) // size))
        outcome = it.outcome
        if outcome == "approved":
            approved[i] += 1
        elif outcome == "denied":
            denied[i] += 1
        elif outcome in ("changes_requested", "timed_out"):
            other[i] += 1
    # Queue depth: the most requests waiting at any moment of the slice (+1 on arrival,
    # -1 on leaving, walked in time order; a leave sorts before an arrival at the same time).
    events = sorted([(q.created_at, 1) for q in queued]
                    + [(q.left_at, -1) for q in queued if q.left_at is not None])
    depth, e = 0, 0
    out = []
    for i in range(n):
        start = since + i * size
        end = min(until, start + size)
        while e < len(events) and events[e][0] < start:
            depth += events[e][1]
            e += 1
        peak = depth
        while e < len(events) and events[e][0] < end:
            depth += events[e][1]
            peak = max(peak, depth)
            e += 1
        out.append(Bucket(start=start, approved=approved[i], denied=denied[i], other=other[i],
                          queue_depth=peak))
    return out


def histogram(items: Iterable[Item]) -> list[tuple[str, int]]:
    """How many decisions took how long, in HISTOGRAM's bins."""
    counts = [0] * len(HISTOGRAM)
    for it in items:
        seconds = it.seconds_to_decision
        if seconds is None:
            continue
        for i, (edge, _) in enumerate(HISTOGRAM):
            if seconds < edge:
                counts[i] += 1
                break
    return [(label, c) for (_, label), c in zip(HISTOGRAM, counts, strict=True)]


@dataclass(frozen=True, kw_only=True)
class Insights:
    """Everything computed over one window."""

    window: float
    """Length of the window, in seconds."""
    since: float
    """Start of the window (epoch seconds)."""
    until: float
    """End of the window."""
    by: GroupBy
    """What `groups` are keyed by."""
    overall: Figures
    """Every request of the window."""
    groups: list[Figures]
    """Per rule, action or agent."""
    reviewers: list[ReviewerFigures]
    """Per reviewer."""
    series: list[Bucket]
    """Approvals over time and queue depth."""
    histogram: list[tuple[str, int]]
    """Time-to-decision distribution."""
    items: list[Item] = field(default_factory=list, repr=False)
    """The history they were computed from (for the advice)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "since": self.since, "until": self.until, "window_seconds": self.window,
            "by": self.by, "overall": self.overall.to_json(),
            "groups": [g.to_json() for g in self.groups],
            "reviewers": [r.to_json() for r in self.reviewers],
            "series": [b.to_json() for b in self.series],
            "histogram": [{"bin": label, "count": c} for label, c in self.histogram],
        }


def compute(items: Sequence[Item], *, since: float, until: float, by: GroupBy = "rule",
            waiting_before: Iterable[Item] = (), window: float | None = None) -> Insights:
    """The insights of a history (pure)."""
    return Insights(
        window=window if window is not None else until - since, since=since, until=until,
        by=by, overall=figures("all", items),
        groups=grouped(items, keys_of(by)), reviewers=reviewers(items),
        series=series(items, waiting_before, since=since, until=until),
        histogram=histogram(items), items=list(items),
    )


def report(store: Store, *, window: float, by: GroupBy = "rule",
           until: float | None = None) -> Insights:
    """Read the window's history from the store and compute its insights."""
    if by not in GROUPINGS:
        raise BadInput(f"`by` is one of rule, action, agent, not `{by}`")
    end = store.clock.now() if until is None else until
    # The end is inclusive of "now": a request submitted this very second counts.
    end_open = math.nextafter(end, math.inf)
    since = end - window
    items = load(store, since=since, until=end_open)
    return compute(items, since=since, until=end_open, by=by,
                   waiting_before=load_waiting_at(store, since), window=window)
