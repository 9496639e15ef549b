"""The rows of the requests a store last committed, for writes that may start from them.

A claim or an outcome on PostgreSQL would otherwise load its request first, a round trip in
the middle of its write. Every change to a request moves its version, and the write's
compare-and-set checks state and version, so a kept row is as good as a loaded one until
another process moves the request on; the write then fails whole, and is made again from a
loaded row (`interlock.store.lifecycle`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping

from interlock.store.tx import Row

#: At most this many rows, holding at most BYTES of text; a row over ROW_BYTES (an action
#: with a large preview, say) is not kept, and is loaded when needed instead.
ROWS = 1024
BYTES = 8 * 1024 * 1024
ROW_BYTES = 64 * 1024


class KnownRows:
    """Rows by request id, least recently kept first, within ROWS and BYTES."""

    def __init__(self) -> None:
        self._rows: OrderedDict[str, tuple[Row, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def bytes(self) -> int:
        """The text the kept rows hold."""
        return self._bytes

    def ids(self) -> list[str]:
        """The kept request ids, least recently kept first."""
        with self._lock:
            return list(self._rows)

    def remember(self, rows: Mapping[str, Row]) -> None:
        """Keep the rows a committed write left its requests in; the newest version wins
        where threads of one process commit the same request out of order."""
        with self._lock:
            for rid, row in rows.items():
                kept = self._rows.get(rid)
                if kept is not None:
                    if kept[0]["version"] >= row["version"]:
                        continue
                    del self._rows[rid]
                    self._bytes -= kept[1]
                size = sum(len(v) for v in row.values() if isinstance(v, str))
                if size > ROW_BYTES:
                    continue
                self._rows[rid] = (dict(row), size)
                self._bytes += size
            while len(self._rows) > ROWS or self._bytes > BYTES:
                self._bytes -= self._rows.popitem(last=False)[1][1]

    def get(self, request_id: str) -> Row | None:
        """A copy of the kept row, if any."""
        with self._lock:
            kept = self._rows.get(request_id)
        return None if kept is None else dict(kept[0])

    def forget(self, request_id: str) -> None:
        with self._lock:
            kept = self._rows.pop(request_id, None)
            if kept is not None:
                self._bytes -= kept[1]
