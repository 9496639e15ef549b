"""Group commit for a single writer (SQLite): writes that arrive while one is under way run in
its transaction, each in its own savepoint, and share its one COMMIT (one fsync).

The thread holding the write lock leads: it runs its own write, then lets each waiting writer
run on the same connection in turn, and commits once nobody waits. A writer returns only after
the commit that made its write durable; one whose write fails is rolled back to its savepoint
alone and gets its error at once.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field


@dataclass(eq=False)
class Member:
    """A write waiting to run inside the leader's transaction."""

    turn: threading.Event = field(default_factory=threading.Event)
    """Set by the leader: the transaction is open and the connection is this writer's."""
    ran: threading.Event = field(default_factory=threading.Event)
    """Set by the writer: its write is done (or rolled back to its savepoint)."""
    done: threading.Event = field(default_factory=threading.Event)
    """Set by the leader after the commit (or its failure)."""
    failed: BaseException | None = None
    """Why the shared commit failed, if it did."""


class Groups:
    """Who leads the open transaction, and who waits to join it."""

    def __init__(self) -> None:
        self._gate = threading.Lock()
        self._leading = False
        self._leader: int | None = None
        self._waiting: deque[Member] = deque()

    def join(self) -> Member | None:
        """A place in the transaction being led, or None when there is none to join (or the
        caller leads it: a write nested in another fails as it always did, not waits)."""
        with self._gate:
            if not self._leading or self._leader == threading.get_ident():
                return None
            member = Member()
            self._waiting.append(member)
            return member

    def lead(self) -> None:
        """The caller holds the write lock and opens a transaction others may join."""
        with self._gate:
            self._leading = True
            self._leader = threading.get_ident()

    def next(self) -> Member | None:
        """The next writer to run, or None: then nobody can join any more, so commit."""
        with self._gate:
            if self._waiting:
                return self._waiting.popleft()
            self._leading = False
            self._leader = None
            return None
