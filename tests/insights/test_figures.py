"""Insight figures and advice on a seeded history whose answers are known exactly."""

from __future__ import annotations

import pytest
from insights_history import POLICY, History

from interlock.errors import BadInput
from interlock.insights import advise, parse_window, report
from interlock.insights import policy_edit as pe
from interlock.insights.figures import BASELINE, Figures, percentile

WEEK = 7 * 86400.0


def by_key(groups: list[Figures]) -> dict[str, Figures]:
    return {g.key: g for g in groups}


def test_rates_per_action(history: History) -> None:
    groups = by_key(report(history.store, window=WEEK, by="action").groups)
    labels = groups["ticket.label"]
    assert (labels.requests, labels.decided, labels.approved, labels.untouched) == (60, 60, 60, 60)
    assert labels.untouched_rate == 1.0 and labels.denial_rate == 0.0
    assert (labels.median_seconds, labels.p90_seconds) == (1.5, 2.0)
    refund = groups["refund"]
    assert (refund.decided, refund.approved, refund.untouched, refund.edited) == (10, 5, 3, 1)
    assert (refund.denied, refund.timed_out) == (4, 1)
    assert refund.approval_rate == 0.5 and refund.denial_rate == 0.4
    assert refund.edit_rate == 0.1 and refund.timeout_rate == 0.1
    # Decisions at 60 s (x4) and 100..140 s: median 100, p90 by nearest rank 140.
    assert (refund.median_seconds, refund.p90_seconds) == (100.0, 140.0)
    # One approved refund later rated incorrect: the only one looked at afterwards.
    assert (refund.reversal_base, refund.reversed, refund.reversal_rate) == (1, 1, 1.0)
    email = groups["send_email"]
    assert (email.unattended, email.unattended_reviewed, email.missed) == (5, 5, 1)
    assert email.miss_rate == 0.2 and email.decided == 0 and email.approval_rate is None


def test_grouping_by_rule_and_agent(history: History) -> None:
    rules = by_key(report(history.store, window=WEEK, by="rule").groups)
    assert set(rules) == {"labels", "refunds", "emails", BASELINE}
    assert rules[BASELINE].requests == 2  # the invoice reads no rule decided
    agents = by_key(report(history.store, window=WEEK, by="agent").groups)
    assert agents["billing"].requests == 12 and agents["triage"].requests == 60
    with pytest.raises(BadInput):
        report(history.store, window=WEEK, by="colour")  # type: ignore[arg-type]


def test_window_excludes_older_requests(history: History) -> None:
    # The last 30 s hold nothing; the refunds came 32 min before the end, 11 s after the
    # last label change.
    assert report(history.store, window=30).overall.requests == 0
    recent = by_key(report(history.store, window=32 * 60 + 5, by="action").groups)
    assert "ticket.label" not in recent and recent["refund"].requests == 10


def test_reviewers_series_and_histogram(history: History) -> None:
    ins = report(history.store, window=WEEK)
    people = {r.reviewer: r for r in ins.reviewers}
    assert (people["alice"].approvals, people["alice"].fast_approvals) == (60, 60)
    assert people["bob"].fast_share == 0.0 and people["bob"].votes == 9
    assert sum(b.approved for b in ins.series) == 65
    assert sum(b.denied for b in ins.series) == 4
    assert max(b.queue_depth for b in ins.series) == 10  # the ten refunds waited together
    assert dict(ins.histogram)["<3s"] == 60 and dict(ins.histogram)["1-5m"] == 9


def test_advice_with_thresholds_and_diffs(history: History) -> None:
    text = POLICY.read_text()
    items = {(a.kind, a.subject): a for a in advise(report(history.store, window=WEEK), text)}
    assert set(items) == {
        ("allowlist", "action ticket.label"),
        ("rubber_stamping", "reviewer alice"),
        ("tighten_scope", "agent billing, action refund"),
        ("tighten_gate", "action send_email"),
    }
    allow = items["allowlist", "action ticket.label"]
    assert allow.loosens and allow.evidence["untouched_rate"] == 1.0
    assert "98%" in allow.threshold and "50" in allow.threshold
    assert allow.diff is not None
    assert "-    decision: require_approval\n+    decision: allow" in allow.diff
    changed = [x for x in allow.diff.splitlines() if x[:1] in "+-" and x[:3] not in "+++---"]
    assert len(changed) == 2  # nothing else of the file moves
    stamp = items["rubber_stamping", "reviewer alice"]
    assert stamp.evidence["fast_share"] == 1.0 and stamp.diff is None
    eager = items["tighten_scope", "agent billing, action refund"]
    assert eager.evidence["denial_rate"] == 0.4 and not eager.loosens
    assert eager.diff is not None and "+  billing: {actions: [read_invoice]}" in eager.diff
    tighten = items["tighten_gate", "action send_email"]
    assert tighten.evidence["miss_rate"] == 0.2
    assert tighten.diff is not None and "+    decision: require_approval" in tighten.diff


def test_advice_diffs_apply_to_a_policy_that_loads(history: History) -> None:
    text = POLICY.read_text()
    new = pe.edit(text, pe.rule_to_allow("labels"))
    assert pe.valid(new)
    assert "# Every label change waits for on-call." in new  # comments kept
    assert "decision: require_approval   # money leaves" in new


def test_no_policy_text_means_no_diffs(history: History) -> None:
    assert all(a.diff is None for a in advise(report(history.store, window=WEEK)))


def test_percentile_and_window() -> None:
    assert percentile([], 0.9) is None
    assert percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.9) == 9
    assert percentile([5], 0.5) == 5
    assert parse_window("7d") == WEEK and parse_window("30m") == 1800
    for bad in ("", "7", "seven days", "-1d"):
        with pytest.raises(BadInput):
            parse_window(bad)
