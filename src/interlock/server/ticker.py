"""A server's periodic work (the sweeper, the policy follower): `once()` every `interval`
seconds in a daemon thread of its own, until stopped.

A tick that raises is logged and tried again at the next one: a database that is briefly
unreachable must not end the work for the life of the process.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger("interlock.server")


class Ticker:
    """Subclasses say what one tick does (`once`) and how it is named in threads and logs."""

    #: The thread's name.
    thread_name = "interlock-ticker"
    #: What a failed tick is called in the log ("sweep failed: ...").
    work = "tick"

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def once(self) -> object:
        """One tick (tests call it directly, with a fake clock)."""
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.once()
            except Exception as exc:  # retried at the next tick
                log.warning("%s failed: %s: %s", self.work, type(exc).__name__, exc)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
