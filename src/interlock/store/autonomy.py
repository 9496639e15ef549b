"""Graduated autonomy (SPEC §2 `autonomy`): an agent's level moves on the events that count.

`step` runs inside the transaction that records the event, so a promotion or demotion
commits with its cause or not at all, and is audited beside it.
"""

from __future__ import annotations

from typing import Literal

import sqlalchemy as sa

from interlock.policy.model import Autonomy
from interlock.policy.records import Level
from interlock.store import schema as t
from interlock.store.tx import Tx

#: What can move an agent: a clean approval counts toward promotion; an incorrect rating takes
#: one back; the others are the `demote_on` events of the policy.
Event = Literal["clean_approval", "incorrect", "denied", "reversed", "failed_after_approval"]

#: The built-in agent that proposes interlock's own gated changes; it has no level to earn.
INTERLOCK_AGENT = "interlock"
_LEVELS = tuple(Level)
_READ = sa.select(t.agents.c.level, t.agents.c.pinned, t.agents.c.clean_approvals).where(
    t.agents.c.name == sa.bindparam("agent_name")
)
_MOVE = (
    t.agents.update()
    .where(t.agents.c.name == sa.bindparam("agent_name"))
    .values(level=sa.bindparam("new_level"), clean_approvals=sa.bindparam("new_clean"),
            updated_at=sa.bindparam("at"))
)
_CLEAN = (
    t.agents.update()
    .where(t.agents.c.name == sa.bindparam("agent_name"))
    .values(clean_approvals=sa.bindparam("new_clean"), updated_at=sa.bindparam("at"))
)


def current_level(rules: Autonomy, agent: str, stored: str | None) -> Level:
    """The level in force: the stored one, else the policy's configured one; capped."""
    level = Level(stored) if stored is not None else rules.level_of(agent)
    return level if level.rank <= rules.max_level.rank else rules.max_level


def step(
    tx: Tx, rules: Autonomy | None, agent: str, event: Event, *, request_id: str | None
) -> None:
    """Apply one event to `agent`'s level; the agent's counters row already exists."""
    if rules is None or agent == INTERLOCK_AGENT:
        return
    row = tx.fetch_row(_READ, {"agent_name": agent})
    if row is None:
        return
    clean = int(row["clean_approvals"])
    if event == "incorrect":  # the approval it counted was not clean after all
        tx.run(_CLEAN, {"agent_name": agent, "new_clean": max(clean - 1, 0), "at": tx.now})
        return
    if event != "clean_approval" and event not in rules.demote_on:
        return
    if row["pinned"]:
        return
    level = current_level(rules, agent, row["level"])
    if event == "clean_approval":
        if clean < rules.promote_after or level.rank >= rules.max_level.rank:
            return
        to = _LEVELS[level.rank + 1]
        tx.run(_MOVE, {"agent_name": agent, "new_level": to.value, "new_clean": 0,
                       "at": tx.now})
        tx.audit("autonomy", "autonomy.promoted",
                 {"agent": agent, "from": level.value, "to": to.value,
                  "reason": f"{clean} clean approvals (promote_after {rules.promote_after})",
                  "clean_approvals": clean, "promote_after": rules.promote_after},
                 request_id=request_id)
        return
    # A demotion event always ends the run of clean approvals, even at the lowest level.
    to = _LEVELS[max(level.rank - 1, 0)]
    tx.run(_MOVE, {"agent_name": agent, "new_level": to.value, "new_clean": 0, "at": tx.now})
    if to is not level:
        tx.audit("autonomy", "autonomy.demoted",
                 {"agent": agent, "from": level.value, "to": to.value, "reason": event,
                  "clean_approvals": clean},
                 request_id=request_id)
