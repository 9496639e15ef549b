"""Embedded mode: the policy, the store and a reviewer channel in the agent's own process.

Calls only `interlock.gateway.Gateway`; a database that cannot be written is StoreUnavailable.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import sqlalchemy as sa

from interlock.errors import BadInput, Conflict, Forbidden, InterlockError, StoreUnavailable
from interlock.gateway import Gateway, Principal
from interlock.policy import Policy
from interlock.policy.records import Decision
from interlock.sdk.channels import Channel, ReviewDecision, ReviewRequest
from interlock.sdk.client import OPEN_STATES, Claimed, Snapshot, Status
from interlock.store import Request, State, Store

T = TypeVar("T")

#: How often a waiting agent runs the store's sweeper (timeouts, leases) in embedded mode.
SWEEP_EVERY = 1.0
#: Answers from a channel that the gateway refused before the error is raised to the caller.
MAX_REFUSED = 3


@contextmanager
def store_errors() -> Iterator[None]:
    """Database failures become StoreUnavailable: the caller fails closed."""
    try:
        yield
    except InterlockError:
        raise
    except (sa.exc.SQLAlchemyError, OSError) as exc:
        raise StoreUnavailable(
            f"the interlock store cannot be reached or written ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); the action did not run"
        ) from exc


def snapshot(request: Request) -> Snapshot:
    """A Snapshot of a stored request."""
    result = request.result
    return Snapshot(
        id=request.id, action=request.action_name, state=request.state.value,
        decision=request.decision.value, reasons=tuple(result.reasons), rules=tuple(result.rules),
        risk=request.risk.value, version=request.version, reason=request.reason,
        batch_id=request.batch_id, fail_open=result.fail_open,
    )


class EmbeddedClient:
    """The Client seam over an in-process Gateway, with a channel that reviews."""

    def __init__(
        self, policy: Policy, store: Store, *, agent: str, channel: Channel,
        poll: float = 0.05,
    ) -> None:
        self.gateway = Gateway(policy, store)
        self.store = store
        self.agent: str | None = agent
        self.principal = Principal(role="agent", name=agent)
        self.channel = channel
        self.poll = poll
        self._asked: dict[str, int] = {}
        self._problems: dict[str, tuple[int, str]] = {}
        self._lock = threading.Lock()
        self._last_sweep = 0.0

    def _call(self, fn: Callable[[], T]) -> T:
        with store_errors():
            return fn()

    def submit(self, body: dict[str, Any]) -> Snapshot:
        return snapshot(self._call(lambda: self.gateway.submit(body, self.principal)).request)

    def submit_claiming(self, body: dict[str, Any]) -> tuple[Snapshot, Claimed | None]:
        done = self._call(lambda: self.gateway.submit(body, self.principal, claim=True))
        claim = done.claim
        if claim is None:
            return snapshot(done.request), None
        return snapshot(done.request), Claimed(
            args=claim.args, checkpoint=claim.checkpoint,
            lease_expires_at=claim.lease_expires_at, digest=claim.digest,
        )

    def get(self, request_id: str) -> Snapshot:
        return snapshot(self._call(lambda: self.gateway.get(request_id, self.principal)))

    def wait(self, request_id: str, timeout: float) -> Snapshot:
        deadline = time.monotonic() + timeout
        pause = min(0.005, self.poll)
        while True:
            request = self._call(lambda: self.gateway.get(request_id, self.principal))
            if request.state is not State.PENDING:
                return snapshot(request)
            if self._should_ask(request):
                self._review(request)
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return snapshot(request)
            self._sweep()
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, self.poll)

    def claim(self, request_id: str) -> Claimed:
        claim = self._call(lambda: self.gateway.claim(request_id, self.principal))
        return Claimed(args=claim.args, checkpoint=claim.checkpoint,
                       lease_expires_at=claim.lease_expires_at, digest=claim.digest)

    def outcome(self, request_id: str, status: Status, summary: str | None) -> None:
        self._call(lambda: self.gateway.outcome(request_id, self.principal, status, summary))

    def cancel(self, request_id: str, reason: str | None) -> None:
        self._call(lambda: self.gateway.cancel(request_id, self.principal, reason))

    def open_requests(self) -> list[Snapshot]:
        found: list[Request] = []
        for state in OPEN_STATES:
            after: str | None = None
            while True:
                page = self._call(lambda s=state, a=after: self.store.list_requests(  # type: ignore[misc]
                    state=State(s), agent=self.agent, after=a, limit=500))
                found.extend(page)
                if len(page) < 500:
                    break
                after = page[-1].id
        return [snapshot(r) for r in sorted(found, key=lambda r: r.id)]

    def track(self, request_id: str) -> None:
        pass  # the store lists this agent's open requests itself

    def fail_open(self, body: dict[str, Any]) -> bool:
        # The policy is in memory: decide without the store (its facts are unreachable).
        try:
            action = self.gateway.prepare(body, self.principal)
        except InterlockError:
            return False
        result = self.gateway.policy.evaluate(action)
        return result.fail_open and result.decision in (Decision.ALLOW, Decision.NOTIFY)

    def close(self) -> None:
        self.store.close()

    # -- the reviewer channel -----------------------------------------------------------

    def _should_ask(self, request: Request) -> bool:
        with self._lock:
            if self._asked.get(request.id) == request.version:
                return False
            self._asked[request.id] = request.version
            return True

    def _review(self, request: Request) -> None:
        view = review_view(self.gateway, request, self._problems.get(request.id, (0, ""))[1])
        answer = self.channel.review(view)
        if answer is None:
            return
        reviewer = self._reviewer(request, answer)
        try:
            self._call(lambda: self.gateway.decide(
                request.id, reviewer, answer.verdict, version=request.version, note=answer.note,
                args=answer.args, confirmation=answer.confirmation,
            ))
        except (Forbidden, BadInput, Conflict) as exc:
            count = self._problems.get(request.id, (0, ""))[0] + 1
            if count >= MAX_REFUSED:
                raise
            self._problems[request.id] = (count, exc.message)
            with self._lock:  # ask again, saying why
                self._asked.pop(request.id, None)
            return
        self._problems.pop(request.id, None)

    def _reviewer(self, request: Request, answer: ReviewDecision) -> Principal:
        # The local reviewer stands in for every approver group of the request; a stage
        # that names only `user:NAME` needs that name in `ReviewDecision.reviewer`.
        groups: list[str] = []
        gates = request.requirements.gates if request.requirements else ()
        for gate in gates:
            for stage in gate.stages:
                groups.extend(a for a in stage.approvers if not a.startswith("user:"))
            groups.extend(a for a in gate.escalate_to if not a.startswith("user:"))
        for gate_progress in request.progress.get("gates", []):
            for stage_progress in gate_progress.get("stages", []):
                groups.extend(a for a in stage_progress.get("extra", [])
                              if not a.startswith("user:"))
        name = answer.reviewer or self.channel.reviewer
        return Principal(role="reviewer", name=name, groups=tuple(dict.fromkeys(groups)))

    def _sweep(self) -> None:
        now = time.monotonic()
        if now - self._last_sweep < SWEEP_EVERY:
            return
        self._last_sweep = now
        self._call(self.store.sweep)


def review_view(gateway: Gateway, request: Request, problem: str = "") -> ReviewRequest:
    """What a channel is shown of a pending request."""
    action = request.action
    context = action.get("context") if isinstance(action.get("context"), dict) else {}
    summary = context.get("summary") if isinstance(context, dict) else None
    if not isinstance(summary, str) or not summary.strip():
        summary = describe_call(request.action_name, request.final_args)
    reqs = request.requirements
    preview = action.get("preview")
    env = action.get("environment")
    reason = action.get("reason")
    return ReviewRequest(
        id=request.id, action=request.action_name, agent=request.agent, summary=summary,
        risk=request.risk.value, why=tuple(request.result.reasons),
        rules=tuple(request.result.rules),
        reason=reason if isinstance(reason, str) else None,
        preview=preview if isinstance(preview, dict) else None,
        args=dict(request.final_args), environment=env if isinstance(env, str) else None,
        confirmation=gateway.confirmation_phrase(request) if reqs and reqs.confirm else None,
        guidance=tuple(g.guidance for g in reqs.gates if g.guidance) if reqs else (),
        version=request.version, problem=problem or None,
    )


def describe_call(name: str, args: dict[str, Any], limit: int = 120) -> str:
    """`send_payment(to='acme', amount=12000)`, shortened to `limit` characters."""
    text = f"{name}(" + ", ".join(f"{k}={v!r}" for k, v in args.items()) + ")"
    return text if len(text) <= limit else text[: limit - 1] + "…"
