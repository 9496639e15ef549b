"""Group commit for a single writer (SQLite): writes that arrive while one is under way run in
its transaction, each in its own savepoint, and share its one COMMIT (one fsync).

One thread leads at a time. It runs its own write, then hands the connection to the first
waiting writer; each writer, done, hands it to the next, and the last hands it back to the
leader, which commits once nobody waits (or the group is full). Writers that arrive while it
commits wait too: the leader hands the lead to the first of them once its commit is done, and
the others join that next group. So under load every commit carries every write that arrived
during the one before, instead of each waiting writer queueing on the lock to commit alone. A
writer returns only after the commit that made its write durable; one whose write fails is
rolled back to its savepoint alone and gets its error at once.

A writer is woken twice (its turn, then the commit) and the leader once per group: the
wake-ups are `Signal`s, a bare lock each, since on a machine whose fsync is cheap they are
most of what a group costs.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

#: Writes one transaction carries at most; the rest wait for the next group, so a steady
#: stream of writers cannot hold off a leader's commit forever.
GROUP_LIMIT = 64


class Signal:
    """A one-shot wake-up for one waiting thread: a lock taken when made and released to
    wake. A `threading.Event` builds a Condition, a lock and a waiter list for the same."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()

    def set(self) -> None:
        self._lock.release()

    def wait(self) -> None:
        self._lock.acquire()


@dataclass(eq=False)
class Member:
    """A write waiting for its turn: to run inside the leader's transaction, or to lead."""

    turn: Signal = field(default_factory=Signal)
    """Set once, when the connection is this writer's: inside the leader's open transaction,
    or, with `leads`, to open the next one; or, with `failed`, never."""
    leads: bool = False
    """Set with `turn` when the writer is to lead the next group itself."""
    done: Signal = field(default_factory=Signal)
    """Set by the leader after the commit (or its failure)."""
    failed: BaseException | None = None
    """Why the shared commit failed, if it did."""
    started: bool = False
    """Whether `turn` was set."""

    def start(self) -> None:
        self.started = True
        self.turn.set()


class Groups:
    """Who leads, and who waits to join the open transaction or to lead the next."""

    def __init__(self) -> None:
        self._gate = threading.Lock()
        #: A leader is at work (from `join` naming it until `finish`): others wait.
        self._busy = False
        self._leader: int | None = None
        self._served = 0
        self._waiting: deque[Member] = deque()
        #: The writers taken into the open transaction, in order.
        self._group: list[Member] = []
        #: Wakes the leader once the last writer of its group is done.
        self._back: Signal | None = None

    def join(self) -> Member | None:
        """None: the caller leads now. Otherwise a place in line: wait for its `turn`, then
        lead if `leads` is set, else run inside the leader's transaction."""
        with self._gate:
            if not self._busy:
                self._busy = True
                self._lead()
                return None
            member = Member()
            self._waiting.append(member)
            return member

    def try_lead(self) -> bool:
        """Lead now if nobody does (True); never waits."""
        with self._gate:
            if self._busy:
                return False
            self._busy = True
            self._lead()
            return True

    def nested(self) -> bool:
        """Whether the caller is the leader, i.e. asks for a write inside its own."""
        return self._leader == threading.get_ident()

    def take(self) -> None:
        """A writer handed the lead by `finish` starts its group."""
        with self._gate:
            self._lead()

    def _lead(self) -> None:
        self._leader = threading.get_ident()
        self._served = 0
        self._group = []

    def next(self) -> Member | None:
        """The next writer to run in the open transaction, or None: commit now. Writers that
        arrive from here on wait for the next group."""
        with self._gate:
            if self._waiting and self._served < GROUP_LIMIT:
                self._served += 1
                member = self._waiting.popleft()
                self._group.append(member)
                return member
            self._served = GROUP_LIMIT  # closed: nobody joins this group any more
            return None

    def relay(self, first: Member) -> None:
        """The leader lets `first` (from `next`) run, then each writer after it, every one
        handing the connection on (`pass_on`); returns once the last has handed it back."""
        back = self._back = Signal()
        first.start()
        back.wait()

    def pass_on(self) -> None:
        """A writer of the group is done: the connection goes to the next one waiting, or
        back to the leader."""
        member = self.next()
        if member is not None:
            member.start()
        else:
            assert self._back is not None
            self._back.set()

    def group(self) -> list[Member]:
        """Every writer taken into the open transaction so far (the leader's to answer)."""
        return self._group

    def finish(self) -> None:
        """The leader's commit is done: hand the lead to the first writer waiting, if any."""
        with self._gate:
            self._leader = None
            if not self._waiting:
                self._busy = False
                return
            heir = self._waiting.popleft()
            heir.leads = True
            heir.start()
