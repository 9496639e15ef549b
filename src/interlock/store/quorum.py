"""Quorum and stages: how votes, timeouts and escalations move a pending request's progress.

Pure functions over `Requirements` and the progress document stored beside the request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from interlock.policy.records import Gate, OnTimeout, Requirements, Stage
from interlock.store.records import Reviewer

# progress = {"gates": [{"stages": [{opened_at, deadline, done_at, approvals, extra,
#                                     escalated}, ...]}, ...]}
Progress = dict[str, Any]


def stage_timeout(gate: Gate, stage: Stage) -> float:
    """Seconds a stage may stay open."""
    return gate.timeout if stage.timeout is None else stage.timeout


def stage_on_timeout(gate: Gate, stage: Stage) -> OnTimeout:
    """What a stage's timeout does."""
    return gate.on_timeout if stage.on_timeout is None else stage.on_timeout


def _open(gate: Gate, si: int, now: float) -> dict[str, Any]:
    return {
        "opened_at": now,
        "deadline": now + stage_timeout(gate, gate.stages[si]),
        "done_at": None,
        "approvals": [],
        "extra": [],
        "escalated": False,
    }


def _closed() -> dict[str, Any]:
    return {"opened_at": None, "deadline": None, "done_at": None, "approvals": [],
            "extra": [], "escalated": False}


def initial(reqs: Requirements, now: float) -> Progress:
    """Fresh progress: each gate's first stage (or every stage, if parallel) open at `now`."""
    gates = []
    for gate in reqs.gates:
        stages = [
            _open(gate, si, now) if (gate.parallel or si == 0) else _closed()
            for si in range(len(gate.stages))
        ]
        gates.append({"stages": stages})
    return {"gates": gates}


def open_stages(reqs: Requirements, progress: Progress) -> list[tuple[int, int]]:
    """(gate, stage) indexes of every stage open for votes."""
    result = []
    for gi, gate in enumerate(reqs.gates):
        for si in range(len(gate.stages)):
            st = progress["gates"][gi]["stages"][si]
            if st["opened_at"] is not None and st["done_at"] is None:
                result.append((gi, si))
    return result


def may_vote(stage: Stage, st: dict[str, Any], reviewer: Reviewer) -> bool:
    """Whether a reviewer is among a stage's approvers (by group, or by `user:NAME`)."""
    approvers = set(stage.approvers) | set(st["extra"])
    return f"user:{reviewer.name}" in approvers or any(g in approvers for g in reviewer.groups)


def allowed_stages(
    reqs: Requirements, progress: Progress, reviewer: Reviewer
) -> list[tuple[int, int]]:
    """The open stages this reviewer may vote in."""
    return [
        (gi, si)
        for gi, si in open_stages(reqs, progress)
        if may_vote(reqs.gates[gi].stages[si], progress["gates"][gi]["stages"][si], reviewer)
    ]


def label(reqs: Requirements, gi: int, si: int) -> str:
    """`source/stage`, how a stage is named in votes and audit entries."""
    gate = reqs.gates[gi]
    return f"{gate.source}/{gate.stages[si].name}"


@dataclass(kw_only=True)
class Counted:
    """What one approval did to the progress."""

    counted: list[tuple[int, int]]
    """Stages the approval counted in."""
    completed: list[tuple[int, int]]
    """Stages it completed."""
    all_done: bool
    """Every gate is now met."""


def approve(
    reqs: Requirements, progress: Progress, reviewer: Reviewer, now: float, *, edited: bool
) -> Counted:
    """Count one reviewer's approval: in every gate where an open stage allows them, in at
    most one stage per gate. An edited approval resets the other approvals of its stages."""
    counted: list[tuple[int, int]] = []
    completed: list[tuple[int, int]] = []
    for gi, gate in enumerate(reqs.gates):
        stages = progress["gates"][gi]["stages"]
        if not edited and any(reviewer.name in st["approvals"] for st in stages):
            continue
        for si, stage in enumerate(gate.stages):
            st = stages[si]
            if st["opened_at"] is None or st["done_at"] is not None:
                continue
            if not may_vote(stage, st, reviewer):
                continue
            if edited:
                st["approvals"] = [reviewer.name]
            elif reviewer.name not in st["approvals"]:
                st["approvals"].append(reviewer.name)
            counted.append((gi, si))
            if len(st["approvals"]) >= stage.quorum:
                completed.extend(complete(reqs, progress, gi, si, now))
            break
    return Counted(counted=counted, completed=completed, all_done=met(progress))


def complete(
    reqs: Requirements, progress: Progress, gi: int, si: int, now: float
) -> list[tuple[int, int]]:
    """Mark a stage done and open the next one of a sequential gate."""
    gate = reqs.gates[gi]
    stages = progress["gates"][gi]["stages"]
    stages[si]["done_at"] = now
    if not gate.parallel and si + 1 < len(gate.stages) and stages[si + 1]["opened_at"] is None:
        stages[si + 1] = _open(gate, si + 1, now)
    return [(gi, si)]


def met(progress: Progress) -> bool:
    """Whether every stage of every gate is done."""
    return all(st["done_at"] is not None for g in progress["gates"] for st in g["stages"])


def deadline(progress: Progress) -> float | None:
    """The earliest deadline of an open stage."""
    times = [
        st["deadline"]
        for g in progress["gates"]
        for st in g["stages"]
        if st["opened_at"] is not None and st["done_at"] is None and st["deadline"] is not None
    ]
    return min(times) if times else None


def timed_out(
    reqs: Requirements, progress: Progress, now: float
) -> list[tuple[int, int, OnTimeout]]:
    """Open stages whose deadline has passed, with what their timeout does."""
    result = []
    for gi, si in open_stages(reqs, progress):
        st = progress["gates"][gi]["stages"][si]
        if st["deadline"] is not None and st["deadline"] <= now:
            gate = reqs.gates[gi]
            action = stage_on_timeout(gate, gate.stages[si])
            if action is OnTimeout.ESCALATE and st["escalated"]:
                action = OnTimeout.DENY  # escalation happens once; the next timeout denies
            result.append((gi, si, action))
    return result


def escalate(reqs: Requirements, progress: Progress, gi: int, si: int, now: float) -> list[str]:
    """Add the gate's `escalate_to` to an open stage and give it one new deadline."""
    gate = reqs.gates[gi]
    st = progress["gates"][gi]["stages"][si]
    added = [a for a in gate.escalate_to if a not in st["extra"]]
    st["extra"].extend(added)
    st["escalated"] = True
    st["deadline"] = now + stage_timeout(gate, gate.stages[si])
    return added


def delegable(reqs: Requirements) -> set[str]:
    """Whom a delegation may add (SPEC §4): the approvers of any stage of the request's rules,
    and their `escalate_to`."""
    names: set[str] = set()
    for gate in reqs.gates:
        names.update(gate.escalate_to)
        for stage in gate.stages:
            names.update(stage.approvers)
    return names


def delegate(
    reqs: Requirements, progress: Progress, stages: list[tuple[int, int]], to: list[str]
) -> list[str]:
    """Add approvers to open stages; votes already cast stand."""
    added: list[str] = []
    for gi, si in stages:
        st = progress["gates"][gi]["stages"][si]
        for who in to:
            if who not in st["extra"] and who not in reqs.gates[gi].stages[si].approvers:
                st["extra"].append(who)
                if who not in added:
                    added.append(who)
    return added


def reopen_last(reqs: Requirements, progress: Progress, now: float) -> list[tuple[int, int]]:
    """For re-confirmation: reopen, in each gate, the stage that completed last."""
    reopened = []
    for gi, gate in enumerate(reqs.gates):
        stages = progress["gates"][gi]["stages"]
        done = [(st["done_at"], si) for si, st in enumerate(stages) if st["done_at"] is not None]
        if not done:
            continue
        _, si = max(done)
        extra = stages[si]["extra"]
        stages[si] = _open(gate, si, now)
        stages[si]["extra"] = extra
        reopened.append((gi, si))
    return reopened
