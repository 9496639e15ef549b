"""Control-flow signals raised to an agent's code when a gated action does not run.

    Signal                      base: the action did not run, for a reason the agent can act on
    ├── Denied                  a reviewer or the policy refused it
    ├── Expired                 nobody decided in time
    ├── ChangesRequested        a reviewer wants a revised action (`revision_of` = request_id)
    ├── SuggestOnly             only a person may carry it out; it went to reviewers
    ├── Cancelled               withdrawn (by this agent, or because its caller gave up)
    ├── AlreadyClaimed          another run claimed it first; it will not run here
    └── StillPending            `resume` was told not to wait, and nobody has decided yet

These are not `interlock.errors`: an error means something is broken (bad input, an
unreachable gateway); a signal means the gate worked and said no, or not yet.
"""

from __future__ import annotations

from typing import ClassVar


class Signal(Exception):
    """The gate worked and the action did not run; `str()` is written for an LLM to read."""

    state: ClassVar[str] = ""

    def __init__(self, *, request_id: str, action: str, reason: str | None = None) -> None:
        self.request_id = request_id
        """The request concerned."""
        self.action = action
        """The action name, e.g. `send_payment`."""
        self.reason = (reason or "").strip() or None
        """The reviewer's or the policy's words, if any."""
        super().__init__(self.explain())

    def explain(self) -> str:
        """What happened and what to do next, in plain words."""
        raise NotImplementedError

    def _because(self) -> str:
        return f": {self.reason}" if self.reason else ""


class Denied(Signal):
    """A reviewer or the policy refused the action."""

    state = "denied"

    def explain(self) -> str:
        return (
            f"interlock denied `{self.action}` (request {self.request_id}){self._because()}. "
            "It did not run. Do not retry it unchanged; take the reason into account, "
            "choose another approach, or tell the user."
        )


class Expired(Signal):
    """No reviewer decided before the request's deadline."""

    state = "expired"

    def explain(self) -> str:
        return (
            f"nobody decided on `{self.action}` (request {self.request_id}) in time, so it "
            f"expired{self._because()}. It did not run. Ask the user before proposing it again."
        )


class ChangesRequested(Signal):
    """A reviewer sent the action back with a note; submit a revision with `revision_of`."""

    state = "changes_requested"

    def explain(self) -> str:
        return (
            f"a reviewer asked for changes to `{self.action}` (request {self.request_id})"
            f"{self._because()}. It did not run. Revise the action as asked and submit it "
            f"again with revision_of={self.request_id}."
        )


class SuggestOnly(Signal):
    """The policy lets only a person carry this action out; reviewers were shown it."""

    state = "suggested"

    def explain(self) -> str:
        return (
            f"`{self.action}` may only be carried out by a person; it was passed to reviewers "
            f"as a suggestion (request {self.request_id}) and did not run here"
            f"{self._because()}. Tell the user what you proposed and continue without it."
        )


class Cancelled(Signal):
    """The request was withdrawn before it ran."""

    state = "cancelled"

    def explain(self) -> str:
        return (
            f"`{self.action}` (request {self.request_id}) was cancelled before it ran"
            f"{self._because()}."
        )


class AlreadyClaimed(Signal):
    """Another run claimed this request first; exactly-once means it does not run here."""

    state = "executing"

    def explain(self) -> str:
        return (
            f"`{self.action}` (request {self.request_id}) was already claimed by another run"
            f"{self._because()}; it will not run a second time here."
        )


class StillPending(Signal):
    """Nobody has decided yet; resume the ticket again later."""

    state = "pending"

    def explain(self) -> str:
        return (
            f"`{self.action}` (request {self.request_id}) is still waiting for a reviewer"
            f"{self._because()}. Resume it later."
        )


#: The signal a final state turns into, for the states where the action will not run.
BY_STATE: dict[str, type[Signal]] = {
    "denied": Denied,
    "expired": Expired,
    "changes_requested": ChangesRequested,
    "suggested": SuggestOnly,
    "done": SuggestOnly,
    "dismissed": SuggestOnly,
    "cancelled": Cancelled,
    "executing": AlreadyClaimed,
    "succeeded": AlreadyClaimed,
    "failed": AlreadyClaimed,
    "unknown": AlreadyClaimed,
}
