"""The one seam under `Gate`: a client that submits, waits, claims and reports.

`EmbeddedClient` calls the gateway in-process; `RemoteClient` speaks SPEC §5 over httpx.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

OPEN_STATES = ("pending", "allowed", "notified", "approved")
Status = Literal["succeeded", "failed"]


@dataclass(frozen=True, kw_only=True)
class Snapshot:
    """A request as a client sees it."""

    id: str
    """The request id."""
    action: str
    """The action name."""
    state: str
    """Its state (SPEC §4)."""
    decision: str
    """The policy's decision."""
    reasons: tuple[str, ...] = ()
    """The policy's reasons."""
    rules: tuple[str, ...] = ()
    """The deciding rules."""
    risk: str = "medium"
    """Risk class."""
    version: int = 0
    """The request's version."""
    reason: str | None = None
    """Why it ended where it is (a deny's note, a timeout)."""
    batch_id: str | None = None
    """Its batch."""
    fail_open: bool = False
    """The policy marked it runnable while the gateway is unreachable."""


@dataclass(frozen=True, kw_only=True)
class Claimed:
    """A successful claim."""

    args: dict[str, Any]
    """Final args, edits applied."""
    checkpoint: Any
    """The checkpoint stored at submission."""
    lease_expires_at: float
    """Report an outcome before this."""
    digest: str
    """sha256 of the action with these args."""


class Client(Protocol):
    """What `Gate` needs from a gateway, in-process or remote."""

    agent: str | None

    def submit(self, body: dict[str, Any]) -> Snapshot:
        """Store an action; the same idempotency key returns the same request."""
        ...

    def submit_claiming(self, body: dict[str, Any]) -> tuple[Snapshot, Claimed | None]:
        """`submit`, also claiming an action allowed at once where the gateway can do both
        in one step (in-process); a claim is returned only if this call made it."""
        ...

    def get(self, request_id: str) -> Snapshot: ...

    def wait(self, request_id: str, timeout: float) -> Snapshot:
        """Return once the request leaves `pending`, or after `timeout` seconds unchanged."""
        ...

    def claim(self, request_id: str) -> Claimed:
        """Exactly-once claim; raises the store's Conflict/Gone answers."""
        ...

    def outcome(self, request_id: str, status: Status, summary: str | None) -> None: ...

    def cancel(self, request_id: str, reason: str | None) -> None: ...

    def open_requests(self) -> list[Snapshot]:
        """This agent's requests that may still run: pending, allowed, notified, approved."""
        ...

    def track(self, request_id: str) -> None:
        """Keep a durable ticket's id where `open_requests` finds it."""
        ...

    def fail_open(self, body: dict[str, Any]) -> bool:
        """Whether the policy lets this action run while the gateway is unreachable."""
        ...

    def close(self) -> None: ...
