"""Wake-ups for agents waiting on a request: asyncio events keyed by request id, no thread each.

Whoever changed a request calls `Hub.changed(ids)` after its transaction committed (the API,
the UI through `NotifyingGateway`, the sweeper). Other processes are heard from PostgreSQL's
LISTEN/NOTIFY (one listening connection per process) or, on SQLite, from the audit trail's tail.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

import sqlalchemy as sa

from interlock.gateway import BatchOutcome, Gateway, Principal
from interlock.store import Claim, Request, Store
from interlock.store.records import Verdict

log = logging.getLogger("interlock.server")

#: The PostgreSQL channel; the payload is a request id.
CHANNEL = "interlock_requests"


class Hub:
    """Events per request id, set when the request changes; safe to call from any thread."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.loop: asyncio.AbstractEventLoop | None = None
        self._events: dict[str, list[Any]] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._pg = store.engine.dialect.name == "postgresql"

    # --- waiting (on the event loop) ---------------------------------------------------
    def subscribe(self, request_id: str) -> asyncio.Event:
        """The event set at the next change of `request_id`; take it before reading state,
        so a change between the read and the wait is not missed. Pair with `unsubscribe`."""
        if self.loop is None:  # served without a lifespan (e.g. in-process tests)
            self.loop = asyncio.get_running_loop()
        entry = self._events.get(request_id)
        if entry is None:
            entry = self._events[request_id] = [asyncio.Event(), 0]
        entry[1] += 1
        event: asyncio.Event = entry[0]
        return event

    def unsubscribe(self, request_id: str, event: asyncio.Event) -> None:
        entry = self._events.get(request_id)
        if entry is not None and entry[0] is event:
            entry[1] -= 1
            if entry[1] <= 0:
                del self._events[request_id]

    @property
    def waiting(self) -> int:
        """Request ids somebody waits on."""
        return len(self._events)

    def _wake(self, ids: Iterable[str]) -> None:
        for rid in ids:
            entry = self._events.pop(rid, None)
            if entry is not None:
                entry[0].set()

    # --- announcing (from any thread) --------------------------------------------------
    def changed(self, ids: Iterable[str], *, broadcast: bool = True) -> None:
        """Requests changed and committed: wake local waiters and, on PostgreSQL, the others."""
        ids = [i for i in ids if i]
        if not ids:
            return
        self._local(ids)
        if broadcast and self._pg:
            self._notify(ids)

    def _local(self, ids: list[str]) -> None:
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake(ids)
        else:
            with contextlib.suppress(RuntimeError):  # loop shutting down
                loop.call_soon_threadsafe(self._wake, ids)

    def _notify(self, ids: list[str]) -> None:
        # Sent from our own connection after the change committed: listeners that wake
        # always read the new state.
        try:
            with self.store.engine.begin() as conn:
                for rid in ids:
                    conn.execute(sa.text("SELECT pg_notify(:c, :p)"), {"c": CHANNEL, "p": rid})
        except sa.exc.SQLAlchemyError as exc:  # waiters fall back on their timeout
            log.warning("notify failed: %s", type(exc).__name__)

    # --- hearing other processes -------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Begin listening for other processes' changes (call once, from the loop)."""
        self.loop = loop
        self._stop.clear()
        target = self._listen_pg if self._pg else self._tail_audit
        thread = threading.Thread(target=target, name="interlock-listen", daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()

    def _listen_pg(self) -> None:
        import psycopg

        url = self.store.engine.url.set(drivername="postgresql")
        dsn = url.render_as_string(hide_password=False)
        while not self._stop.is_set():
            try:
                with psycopg.connect(dsn, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    while not self._stop.is_set():
                        # The generator yields each notification as it arrives and ends
                        # after the timeout; collecting it into a list first held every
                        # wake-up back until the half second was over.
                        for n in conn.notifies(timeout=0.5):
                            self._local([n.payload])
            except psycopg.Error as exc:
                log.warning("listen connection lost: %s", type(exc).__name__)
                self._stop.wait(1.0)

    def _tail_audit(self) -> None:
        # SQLite has no NOTIFY: changes made by another process (a CLI vote, a second
        # server) are read from the audit trail's tail, one cheap head read per tick.
        try:
            seq, _ = self.store.audit_head()
        except sa.exc.SQLAlchemyError:
            seq = 0
        while not self._stop.wait(0.25):
            if not self._events:
                continue
            try:
                head, _ = self.store.audit_head()
                if head == seq:
                    continue
                ids = {e.request_id for e in self.store.audit_entries(after=seq, limit=10_000)
                       if e.request_id is not None}
                seq = head
            except sa.exc.SQLAlchemyError as exc:
                log.warning("audit tail failed: %s", type(exc).__name__)
                continue
            self._local(sorted(ids))



class NotifyingGateway(Gateway):
    """The gateway every server face calls: after each change commits, wake the waiters.

    It shares the wrapped gateway's policy, store and rate-limit windows; only the
    methods that change a request are extended."""

    hub: Hub
    observe: Callable[[Request], None]

    @classmethod
    def wrap(
        cls, gateway: Gateway, hub: Hub, observe: Callable[[Request], None] | None = None
    ) -> NotifyingGateway:
        obj = cls.__new__(cls)
        obj.__dict__.update(gateway.__dict__)
        obj.hub = hub
        obj.observe = observe or (lambda _r: None)
        return obj

    def _done(self, request: Request) -> Request:
        self.observe(request)
        self.hub.changed([request.id])
        return request

    def claim(self, request_id: str, agent: Principal) -> Claim:
        try:
            return super().claim(request_id, agent)
        finally:  # a claim past the TTL moves the request back to pending, then refuses
            self.hub.changed([request_id])

    def outcome(
        self, request_id: str, agent: Principal, status: Literal["succeeded", "failed"],
        summary: str | None = None,
    ) -> Request:
        return self._done(super().outcome(request_id, agent, status, summary))

    def cancel(self, request_id: str, agent: Principal, reason: str | None = None) -> Request:
        return self._done(super().cancel(request_id, agent, reason))

    def decide(
        self, request_id: str, reviewer: Principal, verdict: Verdict, *,
        version: int | None = None, note: str | None = None, args: Any = None,
        confirmation: str | None = None, remember: Mapping[str, Any] | None = None,
    ) -> Request:
        return self._done(super().decide(
            request_id, reviewer, verdict, version=version, note=note, args=args,
            confirmation=confirmation, remember=remember,
        ))

    def delegate(
        self, request_id: str, reviewer: Principal, to: Sequence[str],
        version: int | None = None,
    ) -> Request:
        return self._done(super().delegate(request_id, reviewer, to, version))

    def resolve(
        self, request_id: str, reviewer: Principal,
        status: Literal["done", "dismissed", "succeeded", "failed"], note: str | None = None,
    ) -> Request:
        return self._done(super().resolve(request_id, reviewer, status, note))

    def decide_batch(
        self, batch_id: str, reviewer: Principal,
        verdict: Literal["approve_all", "reject_all", "each"], *,
        items: Mapping[str, str] | None = None, note: str | None = None,
        confirmation: str | None = None, agent: str | None = None,
    ) -> BatchOutcome:
        # The batch's votes commit in one transaction; wake every item's waiters after it.
        out = super().decide_batch(batch_id, reviewer, verdict, items=items, note=note,
                                   confirmation=confirmation, agent=agent)
        ids = [str(r["id"]) for r in out.results]
        for rid in ids:
            self.observe(self.store.get(rid))
        self.hub.changed(ids)
        return out
