"""Wake-ups for agents waiting on a request: asyncio events keyed by request id, no thread each.

Whoever changed a request calls `Hub.changed(...)` after its transaction committed (the API,
the UI through `NotifyingGateway`, the sweeper), with the committed request where it has it, so
a waiter can answer without reading it back. Other processes are heard from PostgreSQL's
LISTEN/NOTIFY (one listening connection per process; the payload carries the committed request
when it fits) or, on SQLite, from the audit trail's tail (ids only).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import fields
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa

from interlock.gateway import BatchOutcome, Gateway, Principal
from interlock.policy.records import Decision, PolicyResult, Requirements, Risk
from interlock.store import Claim, Request, State, Store
from interlock.store.records import Verdict

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("interlock.server")

#: The PostgreSQL channel; the payload is `encode(...)`'s JSON, or a bare request id. Any role
#: that may connect to the database may LISTEN (channels have no privileges) and so read what
#: the requests table holds, or NOTIFY: give interlock a database of its own. A forged payload
#: can only mislead a waiter; claiming checks the stored state.
CHANNEL = "interlock_requests"
#: PostgreSQL refuses a NOTIFY payload of 8000 bytes or more; a larger change goes as its id.
MAX_PAYLOAD = 7999
#: The payload format; a listener that does not know a payload's `v` wakes by its `id`.
PAYLOAD_VERSION = 1

#: A change announced to the hub: the committed request, or only its id (read it back).
Change = Request | str

_REQUEST_FIELDS = tuple(f.name for f in fields(Request))


def encode(request: Request, origin: str = "") -> str:
    """A NOTIFY payload carrying the committed `request`, from the process `origin`."""
    body = {name: getattr(request, name) for name in _REQUEST_FIELDS}
    body.update(
        result=request.result.to_json(),
        requirements=None if request.requirements is None else request.requirements.to_json(),
    )
    return json.dumps({"v": PAYLOAD_VERSION, "id": request.id, "by": origin, "request": body},
                      separators=(",", ":"))


def decode(text: str) -> tuple[str, Change]:
    """(origin, change) from a NOTIFY payload; an unknown or broken one wakes by its id."""
    if not text.startswith("{"):
        return "", text  # a bare id
    data = json.loads(text)
    rid, origin = str(data["id"]), str(data.get("by", ""))
    if data.get("v") != PAYLOAD_VERSION:
        return origin, rid
    try:
        body = dict(data["request"])
        reqs = body["requirements"]
        body.update(
            result=PolicyResult.from_json(body["result"]), state=State(body["state"]),
            risk=Risk(body["risk"]), decision=Decision(body["decision"]),
            requirements=None if reqs is None else Requirements.from_json(reqs),
        )
        return origin, Request(**body)
    except (KeyError, TypeError, ValueError):
        return origin, rid


def payload(change: Change, origin: str) -> str:
    """What NOTIFY sends for `change`: the committed request if it fits, else its id."""
    if isinstance(change, str):
        return change
    text = encode(change, origin)
    return text if len(text.encode()) <= MAX_PAYLOAD else change.id


class Wake(asyncio.Event):
    """Set at a request's next change; `request` is the committed request when the change
    carried it (None: read it back). Shared by everyone waiting on that id."""

    def __init__(self) -> None:
        super().__init__()
        self.request: Request | None = None
        self.waiters = 0


class Hub:
    """Events per request id, set when the request changes; safe to call from any thread."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.loop: asyncio.AbstractEventLoop | None = None
        self._wakes: dict[str, Wake] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._pg = store.engine.dialect.name == "postgresql"
        #: Tells this process's own notifications apart: it woke its waiters already.
        self.origin = uuid.uuid4().hex
        self._sender: psycopg.Connection[Any] | None = None  # NOTIFY goes out on it
        self._sender_lock = threading.Lock()
        self._running = False  # between start and stop: the sender is kept open
        self._queue: list[str] = []  # payloads waiting for the sender
        self._queue_lock = threading.Lock()

    # --- waiting (on the event loop) ---------------------------------------------------
    def subscribe(self, request_id: str) -> Wake:
        """The wake set at the next change of `request_id`; take it before reading state,
        so a change between the read and the wait is not missed. Pair with `unsubscribe`."""
        if self.loop is None:  # served without a lifespan (e.g. in-process tests)
            self.loop = asyncio.get_running_loop()
        wake = self._wakes.get(request_id)
        if wake is None:
            wake = self._wakes[request_id] = Wake()
        wake.waiters += 1
        return wake

    def unsubscribe(self, request_id: str, wake: Wake) -> None:
        if self._wakes.get(request_id) is wake:
            wake.waiters -= 1
            if wake.waiters <= 0:
                del self._wakes[request_id]

    @property
    def waiting(self) -> int:
        """Request ids somebody waits on."""
        return len(self._wakes)

    def _wake(self, changes: Iterable[Change]) -> None:
        for change in changes:
            if isinstance(change, str):
                wake = self._wakes.pop(change, None)
            else:
                wake = self._wakes.pop(change.id, None)
                if wake is not None:
                    wake.request = change
            if wake is not None:
                wake.set()

    # --- announcing (from any thread) --------------------------------------------------
    def changed(self, changes: Iterable[Change], *, broadcast: bool = True) -> None:
        """Requests changed and committed: wake local waiters and, on PostgreSQL, the others.

        Pass the committed `Request` where the caller has it (waiters then answer with it
        without a read), its id otherwise."""
        changes = [c for c in changes if c]
        if not changes:
            return
        self._local(changes)
        if broadcast and self._pg:
            self._notify(changes)

    def _local(self, changes: Sequence[Change]) -> None:
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake(changes)
        else:
            with contextlib.suppress(RuntimeError):  # loop shutting down
                loop.call_soon_threadsafe(self._wake, changes)

    def _notify(self, changes: Sequence[Change]) -> None:
        # Sent after the change committed, so listeners get the committed state. One
        # autocommit connection per process, kept open: a NOTIFY is one round trip (a pooled
        # transaction took three: BEGIN, SELECT, COMMIT). Announcers that meet at the
        # connection go out together: whoever holds it sends everything queued so far.
        import psycopg

        payloads = [payload(change, self.origin) for change in changes]
        with self._queue_lock:
            self._queue += payloads
        with self._sender_lock:
            with self._queue_lock:
                batch, self._queue = self._queue, []
            if not batch:
                return  # an earlier holder sent ours with its own
            try:
                if not self._running:  # not started, or stopped: nobody would close it
                    with psycopg.connect(self._dsn(), autocommit=True) as once:
                        self._send(once, batch)
                    return
                conn = self._sender
                if conn is None or conn.closed:
                    conn = self._sender = psycopg.connect(self._dsn(), autocommit=True)
                self._send(conn, batch)
            except psycopg.Error as exc:  # those waiters fall back on their timeout
                log.warning("notify failed: %s", type(exc).__name__)
                self._close_sender()

    @staticmethod
    def _send(conn: Any, batch: list[str]) -> None:
        conn.execute("SELECT pg_notify(%s, p) FROM unnest(%s::text[]) AS p", (CHANNEL, batch))

    def _close_sender(self) -> None:
        conn, self._sender = self._sender, None
        if conn is not None:
            conn.close()

    def _dsn(self) -> str:
        url = self.store.engine.url.set(drivername="postgresql")
        return url.render_as_string(hide_password=False)

    # --- hearing other processes -------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Begin listening for other processes' changes (call once, from the loop)."""
        self.loop = loop
        self._stop.clear()
        self._running = True
        target = self._listen_pg if self._pg else self._tail_audit
        thread = threading.Thread(target=target, name="interlock-listen", daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        self._running = False
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()
        with self._sender_lock:
            self._close_sender()

    def _listen_pg(self) -> None:
        import psycopg

        dsn = self._dsn()
        with self._sender_lock, contextlib.suppress(psycopg.Error):
            # opened here, so the first change's NOTIFY does not wait for a connection
            if self._sender is None and self._running:
                self._sender = psycopg.connect(dsn, autocommit=True)
        while not self._stop.is_set():
            try:
                with psycopg.connect(dsn, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    while not self._stop.is_set():
                        # The generator yields each notification as it arrives and ends
                        # after the timeout; collecting it into a list first held every
                        # wake-up back until the half second was over.
                        for n in conn.notifies(timeout=0.5):
                            self._heard(n.payload)
            except psycopg.Error as exc:
                log.warning("listen connection lost: %s", type(exc).__name__)
                self._stop.wait(1.0)

    def _heard(self, text: str) -> None:
        try:
            origin, change = decode(text)
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable notification ignored")
            return
        if origin != self.origin:  # our own changes woke our waiters before they were sent
            self._local([change])

    def _tail_audit(self) -> None:
        # SQLite has no NOTIFY: changes made by another process (a CLI vote, a second
        # server) are read from the audit trail's tail, one cheap head read per tick. The
        # head is followed while nobody waits, so the first waiter is not woken by every
        # change since the server started (a read back per waiter, for nothing).
        try:
            seq, _ = self.store.audit_head()
        except sa.exc.SQLAlchemyError:
            seq = 0
        while not self._stop.wait(0.25):
            try:
                head, _ = self.store.audit_head()
                if head == seq:
                    continue
                if not self._wakes:
                    seq = head
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
        self.store.after_commit(partial(self._announce, request))
        return request

    def _announce(self, request: Request) -> None:
        self.observe(request)
        self.hub.changed([request])

    def claim(self, request_id: str, agent: Principal) -> Claim:
        try:
            return super().claim(request_id, agent)
        finally:  # a claim past the TTL moves the request back to pending, then refuses
            self.store.after_commit(partial(self.hub.changed, [request_id]))

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
        changed = [self.store.get(str(r["id"])) for r in out.results]
        for request in changed:
            self.observe(request)
        self.hub.changed(changed)
        return out
