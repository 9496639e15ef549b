"""The dispatcher: reads committed audit entries, queues a notice per target in the store's
outbox, and delivers with backoff.

An event is read only after its transaction committed; its deliveries are queued once per
target and attempted until one succeeds, so each target hears of each event at most once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from interlock.clock import Clock
from interlock.errors import InterlockError
from interlock.gateway import Gateway
from interlock.notify.channels import SENDERS, Sender, check_apprise_url
from interlock.notify.config import NotifyConfig, NotifyConfigError
from interlock.notify.deliveries import CursorMoved, Delivery, Ledger
from interlock.notify.notice import Notice, NoticeKind
from interlock.notify.webhook import DeliveryFailed
from interlock.store import AuditEntry, Request, State, quorum

log = logging.getLogger("interlock.notify")

#: Audit events that may need a person, and what a notice about them is called.
EVENTS: dict[str, NoticeKind] = {
    "state.pending": "approval_needed",   # a new request, or an approval whose TTL passed
    "vote": "approval_needed",            # when it completed a stage and opened the next
    "vote.edit": "approval_needed",
    "delegated": "approval_needed",       # to the reviewers it added
    "escalated": "escalated",
    "state.expired": "expired",
}


class Dispatcher:
    """Turns audit entries into outbox deliveries and sends them; one thread per server."""

    def __init__(
        self,
        gateway: Gateway,
        config: NotifyConfig,
        *,
        clock: Clock | None = None,
        sleep: Callable[[float], Any] | None = None,
        senders: Mapping[str, Sender] | None = None,
    ) -> None:
        self.gateway = gateway
        self.store = gateway.store
        self.config = config
        self.clock: Clock = clock or gateway.store.clock
        self.sleep = sleep or time.sleep
        self.senders: dict[str, Sender] = dict(senders or SENDERS)
        self.targets = {t.name: t for t in config.targets}
        for target in config.targets:
            if target.kind == "apprise" and not check_apprise_url(target.url):
                raise NotifyConfigError(f"target `{target.name}`: apprise does not understand "
                                        "its URL")
        self.ledger = Ledger(gateway.store)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- reading events ----------------------------------------------------------------

    def collect(self, *, limit: int = 500) -> int:
        """Read audit entries after the stored position; queue their deliveries in the
        outbox. Returns how many deliveries were queued (0 if another dispatcher read the
        same entries first)."""
        old = self.ledger.position()
        entries = list(self.store.audit_entries(after=old, limit=limit))
        if not entries:
            return 0
        rows: list[tuple[Notice, str]] = []
        for entry in entries:
            for notice in self.notices(entry):
                rows.extend((notice, t.name) for t in self.config.targets
                            if t.wants(notice.approvers))
        try:
            self.ledger.queue(old, entries[-1].seq, rows, self.clock.now())
        except CursorMoved:
            return 0
        return len(rows)

    def notices(self, entry: AuditEntry) -> list[Notice]:
        """The notices one audit entry calls for (none for most)."""
        kind = EVENTS.get(entry.event)
        if kind is None or entry.request_id is None:
            return []
        if self.clock.now() - entry.at > self.config.max_age:
            return []
        if entry.event in ("vote", "vote.edit") and not entry.data.get("completed"):
            return []
        try:
            request = self.store.get(entry.request_id)
        except InterlockError:
            return []
        reqs = request.requirements
        if reqs is None:
            return []
        progress = request.progress
        if kind == "expired":
            approvers = _approvers(request, [
                (gi, si) for gi, gate in enumerate(reqs.gates) for si in range(len(gate.stages))
            ])
        else:
            if request.state is not State.PENDING:
                return []  # decided meanwhile: nobody needs calling any more
            stages = quorum.open_stages(reqs, progress)
            if entry.event in ("vote", "vote.edit"):
                stages = [(gi, si) for gi, si in stages
                          if progress["gates"][gi]["stages"][si]["opened_at"] == entry.at]
            approvers = _approvers(request, stages)
            if entry.event == "delegated":
                approvers = tuple(str(a) for a in entry.data.get("added") or ())
            if not approvers:
                return []
        env = request.action.get("environment")
        return [Notice(
            id=f"audit:{entry.seq}", kind=kind, request_id=request.id,
            action=request.action_name, agent=request.agent,
            environment=env if isinstance(env, str) else None, risk=request.risk.value,
            deadline=None if kind == "expired" else request.deadline,
            approvers=approvers, link=self.gateway.link(request.id), confirm=reqs.confirm,
            digest=request.digest, reason=request.reason if kind == "expired" else None,
            at=entry.at,
        )]

    # -- delivering ---------------------------------------------------------------------

    def deliver(self) -> int:
        """Attempt every due delivery once; returns how many targets took theirs."""
        sent = 0
        for item in self.ledger.due(self.clock.now()):
            if self.ledger.take(item) and self._attempt(item):
                sent += 1
        return sent

    def _attempt(self, item: Delivery) -> bool:
        target = self.targets.get(item.target)
        if target is None:
            self.ledger.failed(item.id, "the target is no longer configured", None)
            return False
        try:
            self.senders[target.kind](target, Notice.from_json(item.notice), self.clock.now(),
                                      self.config.timeout)
        except DeliveryFailed as exc:
            error = str(exc)
        except Exception as exc:  # a sender's bug must not stop the other deliveries
            error = f"{type(exc).__name__}: {exc}"
        else:
            self.ledger.delivered(item.id, self.clock.now())
            return True
        attempts = item.attempts + 1
        retry_at = (None if attempts >= self.config.retry.attempts
                    else self.clock.now() + self.config.retry.delay(attempts))
        self.ledger.failed(item.id, error, retry_at)
        log.warning("notification %s to %s failed (attempt %d%s): %s", item.event, item.target,
                    attempts, "" if retry_at else ", giving up", error)
        return False

    def tick(self) -> int:
        """Collect, then deliver what is due; returns deliveries made."""
        self.collect()
        return self.deliver()

    def drain(self, *, max_wait: float = 86400.0) -> int:
        """Collect and deliver until nothing is queued, sleeping (through the injected
        `sleep`) until each retry is due, for at most `max_wait` seconds of waiting."""
        total = 0
        waited = 0.0
        while True:
            while self.collect():
                pass
            total += self.deliver()
            due = self.ledger.next_due()
            if due is None:
                return total
            wait = due - self.clock.now()
            if wait > 0:
                if waited + wait > max_wait:
                    return total
                self.sleep(wait)
                waited += wait

    # -- the background thread ------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as exc:  # the next tick tries again
                log.warning("notification dispatch failed: %s: %s", type(exc).__name__, exc)
            self._stop.wait(self.config.interval)

    def start(self) -> Dispatcher:
        """Run in a daemon thread until `stop()`."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="interlock-notify", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)


def _approvers(request: Request, stages: list[tuple[int, int]]) -> tuple[str, ...]:
    """The approvers of these stages, with those escalation or delegation added."""
    reqs = request.requirements
    assert reqs is not None
    out: list[str] = []
    for gi, si in stages:
        st = request.progress["gates"][gi]["stages"][si]
        for who in (*reqs.gates[gi].stages[si].approvers, *st.get("extra", ())):
            if who not in out:
                out.append(str(who))
    return tuple(out)
