"""A serving process follows policy changes applied elsewhere, read from the shared audit trail.

A change applied through this server swaps its policy at once. One applied by another process
(`interlock insights apply --db`, another server on the same database) is a `policy.changed`
entry naming the hash it started from and the hash it produced: when this server's policy file
hashes to a result reached from the policy it runs through such entries, the server loads it
and audits `policy.loaded`. A file edited by hand is not picked up (that still takes a
restart), and neither is a file that does not load.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import sqlalchemy as sa

from interlock.errors import PolicyError
from interlock.gateway import Gateway
from interlock.insights.advice import text_hash
from interlock.insights.apply import CHANGED_EVENT
from interlock.insights.policy_edit import read_source
from interlock.policy import Policy, load_policy_text
from interlock.server.ticker import Ticker
from interlock.store import audit as chain
from interlock.store import schema as t

log = logging.getLogger("interlock.server")

#: Seconds between two looks at the audit trail's head.
INTERVAL = 2.0


class PolicyFollower(Ticker):
    """Watches for `policy.changed` entries and reloads the gateway's policy file to match."""

    thread_name = "interlock-policy-follow"
    work = "policy follow"

    def __init__(self, gateway: Gateway, *, interval: float = INTERVAL,
                 on_change: Callable[[Policy], None] | None = None) -> None:
        super().__init__(interval)
        self.gateway = gateway
        self.on_change = on_change
        """Called, from the follower's thread, whenever the policy served changed (here or by
        an apply through this server), e.g. to record the new hash in the server registry."""
        self._seq, _ = gateway.store.audit_head()
        self._served = gateway.policy.hash
        self._changes: dict[str, set[str]] = {}
        """old hash -> new hashes, from the `policy.changed` entries seen."""
        self._behind = False
        self._warned: str | None = None

    def once(self) -> Policy | None:
        """One look; returns the policy it loaded, if it loaded one (tests call it directly)."""
        store = self.gateway.store
        head, _ = store.audit_head()
        if head != self._seq:
            q = (sa.select(t.audit.c.seq, t.audit.c.entry, t.audit.c.prev_hash, t.audit.c.hash)
                 .where(t.audit.c.seq > self._seq, t.audit.c.seq <= head,
                        t.audit.c.event == CHANGED_EVENT)
                 .order_by(t.audit.c.seq))
            with store.engine.connect() as conn:
                for row in conn.execute(q):
                    data = chain.to_entry(row).data
                    old, new = data.get("old_hash"), data.get("new_hash")
                    if isinstance(old, str) and isinstance(new, str):
                        self._changes.setdefault(old, set()).add(new)
                        self._behind = True
            self._seq = head
        loaded = self._catch_up() if self._behind else None
        policy = self.gateway.policy
        if policy.hash != self._served:
            self._served = policy.hash
            if self.on_change is not None:
                self.on_change(policy)
        return loaded

    def _catch_up(self) -> Policy | None:
        served = self.gateway.policy
        text = read_source(served.file)
        digest = text_hash(text) if text is not None else None
        if digest is None or digest == served.hash:
            self._behind = False
            return None
        if digest not in self._reachable(served.hash):
            # Not (yet) the result of audited changes of what this server runs: another
            # host's copy still to be deployed, or a hand edit. Look again next time; say so
            # once per content.
            if self._warned != digest:
                self._warned = digest
                log.warning("policy file %s (%s) is not the result of an audited change: "
                            "still serving %s", served.file, digest[:12], served.hash[:12])
            return None
        assert text is not None
        try:
            policy = load_policy_text(text, served.file)
        except PolicyError as exc:
            self._behind = False
            log.warning("policy file %s does not load, still serving %s: %s",
                        served.file, served.hash[:12], exc.message)
            return None
        self.gateway.swap_policy(policy)
        self.gateway.store.record("system", "policy.loaded", {
            "hash": policy.hash, "file": served.file, "previous_hash": served.hash,
            "why": f"followed {CHANGED_EVENT}"})
        self._behind = False
        log.info("policy %s loaded from %s after a change applied elsewhere",
                 policy.hash[:12], served.file)
        return policy

    def _reachable(self, start: str) -> set[str]:
        """Every hash audited changes lead to from `start`."""
        seen: set[str] = set()
        todo = [start]
        while todo:
            for new in self._changes.get(todo.pop(), ()):
                if new not in seen:
                    seen.add(new)
                    todo.append(new)
        return seen
