"""The decision history that insights and advice are computed from, read in three queries.

Read-only SQLAlchemy Core over the store's tables: requests in a window, their votes and
their annotations, joined in memory; nothing here ever writes.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa

from interlock.policy.records import Decision
from interlock.store import Store
from interlock.store import schema as t
from interlock.store.records import State

#: How a request ended as far as people are concerned.
Outcome = Literal[
    "pending", "approved", "denied", "changes_requested", "timed_out", "cancelled",
    "allowed", "notified", "suggested", "refused",
]

#: States a request reaches only after it was approved (by people or by a timeout).
_AFTER_APPROVAL = frozenset({State.APPROVED, State.EXECUTING, State.SUCCEEDED, State.FAILED,
                             State.UNKNOWN})


@dataclass(frozen=True, kw_only=True)
class CastVote:
    """One vote, as the figures need it."""

    reviewer: str
    """Who voted."""
    verdict: str
    """approve / deny / request_changes."""
    note: str | None
    """Free text."""
    edited: bool
    """Whether the vote carried edited args."""
    at: float
    """When it was cast."""


@dataclass(frozen=True, kw_only=True)
class Item:
    """One request with its votes and annotations, reduced to what the figures read."""

    id: str
    """Request id."""
    agent: str
    """Proposing agent."""
    action: str
    """Action name."""
    rules: tuple[str, ...]
    """Rules that decided it (empty: the baseline or scope did)."""
    decision: Decision
    """The policy's decision at submission."""
    state: State
    """Current state."""
    created_at: float
    """Submission time."""
    decided_at: float | None
    """When it left pending."""
    left_at: float | None
    """When it stopped waiting for people (decided, cancelled), if it did."""
    edited: bool
    """Approved with edited args."""
    votes: tuple[CastVote, ...]
    """Oldest first."""
    reviews: tuple[str, ...]
    """Post-execution reviews: ok / flagged / reversed."""
    ratings: tuple[str, ...]
    """Feedback ratings: correct / partially_correct / incorrect."""

    @property
    def outcome(self) -> Outcome:
        """How it ended: a person's verdict, a timeout, or the policy on its own."""
        if self.decision is not Decision.REQUIRE_APPROVAL:
            return {
                Decision.ALLOW: "allowed", Decision.NOTIFY: "notified",
                Decision.SUGGEST: "suggested", Decision.DENY: "refused",
            }[self.decision]  # type: ignore[return-value]
        approvals = any(v.verdict == "approve" for v in self.votes)
        if self.state is State.PENDING:
            return "pending"
        if self.state is State.EXPIRED:
            return "timed_out"
        if self.state is State.DENIED:
            # The sweeper denies a non-low-risk `on_timeout: approve` without a vote.
            return "denied" if any(v.verdict == "deny" for v in self.votes) else "timed_out"
        if self.state is State.CHANGES_REQUESTED:
            return "changes_requested"
        if self.state in _AFTER_APPROVAL:
            return "approved" if approvals else "timed_out"
        return "cancelled"

    @property
    def untouched(self) -> bool:
        """Approved by people with no edit and no note."""
        return self.outcome == "approved" and not self.edited and not any(
            v.edited or (v.note or "").strip() for v in self.votes if v.verdict == "approve"
        )

    @property
    def seconds_to_decision(self) -> float | None:
        """Submission to the deciding vote, for requests people decided."""
        if self.outcome not in ("approved", "denied", "changes_requested"):
            return None
        if self.decided_at is None:
            return None
        return max(0.0, self.decided_at - self.created_at)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def load(store: Store, *, since: float, until: float) -> list[Item]:
    """Requests submitted in `[since, until)`, with their votes and annotations."""
    r = t.requests.c
    in_window = sa.and_(r.created_at >= since, r.created_at < until)
    return _items(store, in_window)


def load_waiting_at(store: Store, when: float) -> list[Item]:
    """Gated requests submitted before `when` that were still waiting at `when`."""
    r = t.requests.c
    cond = sa.and_(
        r.decision == Decision.REQUIRE_APPROVAL.value,
        r.created_at < when,
        sa.or_(r.state == State.PENDING.value, r.decided_at >= when,
               sa.and_(r.decided_at.is_(None), r.updated_at >= when)),
    )
    return _items(store, cond)


def _items(store: Store, cond: sa.ColumnElement[bool]) -> list[Item]:
    r = t.requests.c
    ids = sa.select(r.id).where(cond).scalar_subquery()
    cols = (r.id, r.agent, r.action_name, r.result, r.decision, r.state, r.created_at,
            r.decided_at, r.updated_at, r.edited)
    votes: dict[str, list[CastVote]] = defaultdict(list)
    reviews: dict[str, list[str]] = defaultdict(list)
    ratings: dict[str, list[str]] = defaultdict(list)
    v, f = t.votes.c, t.feedback.c
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(*cols).where(cond).order_by(r.id)).all()
        for vr in conn.execute(
            sa.select(v.request_id, v.reviewer, v.verdict, v.note, v.args, v.at)
            .where(v.request_id.in_(ids)).order_by(v.id)
        ):
            votes[vr.request_id].append(CastVote(
                reviewer=vr.reviewer, verdict=vr.verdict, note=vr.note,
                edited=vr.args is not None, at=vr.at))
        for fr in conn.execute(
            sa.select(f.request_id, f.kind, f.value).where(f.request_id.in_(ids))
            .order_by(f.id)
        ):
            (reviews if fr.kind == "review" else ratings)[fr.request_id].append(fr.value)
    items = []
    for row in rows:
        state = State(row.state)
        left = row.decided_at
        if left is None and state is not State.PENDING:
            left = row.updated_at
        items.append(Item(
            id=row.id, agent=row.agent, action=row.action_name,
            rules=tuple(json.loads(row.result).get("rules", ())),
            decision=Decision(row.decision), state=state, created_at=row.created_at,
            decided_at=row.decided_at, left_at=left, edited=bool(row.edited),
            votes=tuple(votes.get(row.id, ())), reviews=tuple(reviews.get(row.id, ())),
            ratings=tuple(ratings.get(row.id, ())),
        ))
    return items


def full_rows(store: Store, *, page: int = 500) -> Iterator[dict[str, Any]]:
    """Every request row with its votes and annotations, oldest first, a page at a time."""
    r, v, f = t.requests.c, t.votes.c, t.feedback.c
    after = ""
    while True:
        with store.engine.connect() as conn:
            rows = [dict(m) for m in conn.execute(
                sa.select(t.requests).where(r.id > after).order_by(r.id).limit(page)
            ).mappings()]
            if not rows:
                return
            ids = [row["id"] for row in rows]
            votes: dict[str, list[dict[str, Any]]] = defaultdict(list)
            notes: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for m in conn.execute(
                sa.select(t.votes).where(v.request_id.in_(ids)).order_by(v.id)
            ).mappings():
                votes[m["request_id"]].append(
                    {**dict(m), "args": _loads(m["args"]), "counted": _loads(m["counted"])})
            for m in conn.execute(
                sa.select(t.feedback).where(f.request_id.in_(ids)).order_by(f.id)
            ).mappings():
                notes[m["request_id"]].append({**dict(m), "correction": _loads(m["correction"])})
        for row in rows:
            for key in ("action", "result", "final_args", "requirements"):
                row[key] = _loads(row[key])
            row["votes"] = votes.get(row["id"], [])
            row["annotations"] = notes.get(row["id"], [])
            yield row
        after = ids[-1]
