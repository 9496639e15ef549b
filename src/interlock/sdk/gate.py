"""`Gate`: guard a function or tool call, in-process or through the server, sync or async.

submit -> wait (a channel or the server decides) -> claim once -> run -> report the outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar, overload

import httpx

from interlock.errors import Conflict, Gone, InterlockError, StoreUnavailable
from interlock.sdk.action import Action, Resumed, RiskHint, Ticket
from interlock.sdk.calls import CallShape, restore_redacted
from interlock.sdk.channels import ChannelSpec, make_channel
from interlock.sdk.client import Claimed, Client, Snapshot, Status
from interlock.sdk.journal import Journal, Tickets
from interlock.sdk.signals import BY_STATE, AlreadyClaimed, Cancelled, Signal, StillPending

P = ParamSpec("P")
T = TypeVar("T")
log = logging.getLogger("interlock.sdk")

CLAIMABLE = frozenset({"allowed", "notified", "approved"})
PREVIEW_KINDS = frozenset({"diff", "sql", "email", "text", "json"})
#: Seconds one wait call blocks before the loop checks the caller's own timeout again.
WAIT_SLICE = 30.0

class Gate:
    """Puts interlock in front of an agent's actions. Build with `from_policy` or `connect`."""

    def __init__(self, client: Client, *, journal: Journal, agent: str | None = None) -> None:
        self.client = client
        """The seam to the gateway (embedded or remote)."""
        self.journal = journal
        """Fail-open runs waiting to be audited."""
        self.agent = agent
        """The agent name actions are submitted as (remote: the token decides)."""

    # -- construction -------------------------------------------------------------------

    @classmethod
    def from_policy(
        cls,
        path: str | os.PathLike[str],
        db: str = "sqlite:///./interlock.db",
        *,
        channel: ChannelSpec | None = None,
        agent: str = "agent",
        state_dir: str | os.PathLike[str] | None = None,
        poll: float = 0.05,
    ) -> Gate:
        """Embedded mode: the policy file, the store at `db` and a reviewer `channel`
        (`"terminal"`, `"web"`, a `Channel`, or a callable taking a ReviewRequest)."""
        from interlock.policy import load_policy
        from interlock.sdk.embedded import EmbeddedClient
        from interlock.store import open_store

        policy = load_policy(Path(path))
        store = open_store(db)
        client = EmbeddedClient(policy, store, agent=agent, channel=make_channel(channel),
                                poll=poll)
        return cls(client, journal=Journal(_state(state_dir) / "journal.jsonl"), agent=agent)

    @classmethod
    def connect(
        cls,
        url: str,
        *,
        token: str,
        agent: str | None = None,
        policy: str | os.PathLike[str] | None = None,
        state_dir: str | os.PathLike[str] | None = None,
        retries: int = 5,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> Gate:
        """Remote mode: the server at `url` as the agent `token` names. Give `policy` (a copy
        of the server's) and `agent` to let `fail_open` actions run while it is unreachable."""
        from interlock.policy import load_policy
        from interlock.sdk.remote import RemoteClient

        state = _state(state_dir)
        client = RemoteClient(
            url, token=token, agent=agent,
            policy=None if policy is None else load_policy(Path(policy)),
            retries=retries, timeout=timeout, transport=transport,
            tickets=Tickets(state / "tickets.jsonl"),
        )
        return cls(client, journal=Journal(state / "journal.jsonl"), agent=agent)

    def close(self) -> None:
        """Release connections."""
        self.client.close()

    def __enter__(self) -> Gate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- guard, run, arun ---------------------------------------------------------------

    def guard(
        self,
        action: str | None = None,
        *,
        capabilities: Sequence[str] = (),
        risk: RiskHint | None = None,
        preview: Callable[..., Any] | None = None,
        describe: Callable[..., str] | None = None,
        environment: str | None = None,
        timeout: float | None = None,
    ) -> Callable[[Callable[P, T]], Callable[P, T]]:
        """Decorate a sync or async function: each call is an action named `action`
        (default: the function's name) with the call's arguments as `args`.

        `preview(*args, **kwargs)` computes the dry-run effect shown to reviewers;
        `describe(*args, **kwargs)` a one-line summary. The call blocks until decided, runs
        the function once with the final (possibly edited) arguments and reports how it went;
        it raises Denied, Expired, ChangesRequested, SuggestOnly or Cancelled otherwise.
        `timeout`: seconds to wait for a decision before the request is cancelled."""

        def decorate(fn: Callable[P, T]) -> Callable[P, T]:
            name = action or fn.__name__
            shape = CallShape(fn)

            def build(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[
                Action, Callable[[dict[str, Any]], Any]
            ]:
                shown, opaque = shape.bind(args, kwargs)
                act = Action(action=name, args=shown, capabilities=list(capabilities),
                             risk=risk, environment=environment)
                if preview is not None:
                    act.preview = normalize_preview(preview(*args, **kwargs))
                if describe is not None:
                    act.context = {"summary": str(describe(*args, **kwargs))}
                return act, lambda final: shape.call(fn, final, opaque, shown)

            if inspect.iscoroutinefunction(fn):

                @functools.wraps(fn)
                async def guarded_async(*args: Any, **kwargs: Any) -> Any:
                    act, invoke = build(args, kwargs)
                    return await self._arun(act, invoke, timeout)

                return guarded_async  # type: ignore[return-value]

            @functools.wraps(fn)
            def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
                act, invoke = build(args, kwargs)
                result: T = self._run(act, invoke, timeout)
                return result

            return guarded

        return decorate

    def run(self, action: Action, fn: Callable[..., T], *, timeout: float | None = None) -> T:
        """Gate `action`, then call `fn(**final_args)` once; see `guard`."""
        proposed = dict(action.args)

        def invoke(final: dict[str, Any]) -> T:
            return fn(**restore_redacted(final, proposed))

        return self._run(action, invoke, timeout)

    async def arun(
        self, action: Action, fn: Callable[..., Awaitable[T]], *, timeout: float | None = None
    ) -> T:
        """Gate `action`, then `await fn(**final_args)` once. Cancelling the awaiting task
        cancels a request still waiting for people."""
        proposed = dict(action.args)
        result: T = await self._arun(
            action, lambda final: fn(**restore_redacted(final, proposed)), timeout
        )
        return result

    def _run(self, action: Action, invoke: Callable[[dict[str, Any]], T],
             timeout: float | None) -> T:
        body = self._body(action)
        try:
            snap, claimed_now = self.client.submit_claiming(body)
        except StoreUnavailable as exc:
            return self._fail_open(body, invoke, exc)
        self._flush_if_needed()
        if claimed_now is not None:  # allowed at once and claimed in the same step
            return self._invoke(snap.id, claimed_now, invoke)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            claimed = self._await_claim(snap, deadline)
        except BaseException as exc:
            if not isinstance(exc, Signal) or isinstance(exc, Cancelled):
                self._cancel_quietly(snap.id, _why_cancelled(exc))
            raise
        return self._invoke(snap.id, claimed, invoke)

    async def _arun(self, action: Action, invoke: Callable[[dict[str, Any]], Any],
                    timeout: float | None) -> Any:
        body = self._body(action)
        try:
            snap = await asyncio.to_thread(self.client.submit, body)
        except StoreUnavailable as exc:
            return await _maybe_await(self._fail_open(body, invoke, exc))
        await asyncio.to_thread(self._flush_if_needed)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            claimed = None
            while claimed is None:
                snap, claimed = await asyncio.to_thread(self._step, snap, deadline, True)
        except BaseException as exc:
            if not isinstance(exc, Signal) or isinstance(exc, Cancelled):
                await asyncio.to_thread(self._cancel_quietly, snap.id, _why_cancelled(exc))
            raise
        try:
            result = await _maybe_await(invoke(claimed.args))
        except BaseException as exc:
            await asyncio.to_thread(self._report, snap.id, "failed", _describe_exc(exc))
            raise
        await asyncio.to_thread(self._report, snap.id, "succeeded", None)
        return result

    # -- durable mode -------------------------------------------------------------------

    def submit(self, action: Action) -> Ticket:
        """Submit and return at once; `resume(ticket.id)` later, in any process."""
        snap = self.client.submit(self._body(action))
        self.client.track(snap.id)
        return _ticket(snap)

    def batch(self, actions: Sequence[Action], *, batch_id: str | None = None) -> list[Ticket]:
        """Submit related actions as one batch a reviewer can decide at once; each is decided
        by the policy on its own. Returns one ticket per action, in order."""
        batch = batch_id or f"batch-{uuid.uuid4().hex}"
        tickets = []
        for act in actions:
            body = self._body(act)
            body["batch_id"] = batch
            snap = self.client.submit(body)
            self.client.track(snap.id)
            tickets.append(_ticket(snap))
        return tickets

    @overload
    def resume(self, ticket_id: str, fn: None = None, *, wait: bool = True,
               timeout: float | None = None) -> Resumed: ...

    @overload
    def resume(self, ticket_id: str, fn: Callable[..., T], *, wait: bool = True,
               timeout: float | None = None) -> T: ...

    def resume(self, ticket_id: str, fn: Callable[..., Any] | None = None, *,
               wait: bool = True, timeout: float | None = None) -> Any:
        """Claim a ticket exactly once and return its decision, final args and checkpoint.

        Waits for a decision unless `wait=False` (then StillPending). With `fn`, calls
        `fn(**args)` and reports the outcome; without, report it with `report`. A ticket
        another process claimed raises AlreadyClaimed: it never runs twice."""
        snap = self.client.get(ticket_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        claimed = self._await_claim(snap, deadline, wait=wait)
        if fn is None:
            return Resumed(id=snap.id, action=snap.action, decision=snap.decision,
                           state=snap.state, args=claimed.args, checkpoint=claimed.checkpoint,
                           lease_expires_at=claimed.lease_expires_at, digest=claimed.digest)
        return self._invoke(snap.id, claimed, lambda final: fn(**final))

    def report(self, ticket_id: str, status: Status, summary: str | None = None) -> None:
        """Report how a resumed action went: `succeeded` or `failed`."""
        self.client.outcome(ticket_id, status, summary)

    def cancel(self, ticket_id: str, reason: str | None = None) -> None:
        """Withdraw a ticket that has not been claimed."""
        self.client.cancel(ticket_id, reason)

    def pending(self) -> list[Ticket]:
        """This agent's open tickets: waiting for people, or decided and not yet claimed."""
        return [_ticket(s) for s in self.client.open_requests()]

    def flush_journal(self) -> int:
        """Submit fail-open runs kept while the gateway was unreachable; returns how many
        reached its audit trail (the rest stay journaled)."""
        try:
            return self.journal.flush(self.client)
        except StoreUnavailable:
            return 0

    # -- the machinery ------------------------------------------------------------------

    def _body(self, action: Action) -> dict[str, Any]:
        body = action.to_json()
        if self.agent is not None:
            body.setdefault("agent", self.agent)
        if not body.get("idempotency_key"):
            # Set once, before the first attempt: every retry resends the same key.
            body["idempotency_key"] = uuid.uuid4().hex
        return body

    def _await_claim(self, snap: Snapshot, deadline: float | None, *,
                     wait: bool = True) -> Claimed:
        while True:
            snap, claimed = self._step(snap, deadline, wait)
            if claimed is not None:
                return claimed

    def _step(self, snap: Snapshot, deadline: float | None,
              wait: bool) -> tuple[Snapshot, Claimed | None]:
        """One move: wait a slice while pending, claim once decided, or raise the signal."""
        if snap.state == "pending":
            if not wait:
                raise StillPending(request_id=snap.id, action=snap.action)
            remaining = WAIT_SLICE if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                raise Cancelled(request_id=snap.id, action=snap.action,
                                reason="no decision came before the caller's timeout")
            return self.client.wait(snap.id, min(remaining, WAIT_SLICE)), None
        if snap.state not in CLAIMABLE:
            raise _signal(snap.state, snap, snap.reason or "; ".join(snap.reasons))
        try:
            return snap, self.client.claim(snap.id)
        except Conflict as exc:
            if exc.code in ("not_decided", "reconfirmation_required"):
                return self.client.get(snap.id), None  # pending (again): wait for people
            if exc.code == "already_claimed":
                raise AlreadyClaimed(request_id=snap.id, action=snap.action) from None
            raise
        except Gone as exc:
            raise _signal(exc.code, snap, exc.message) from None

    def _invoke(self, request_id: str, claimed: Claimed,
                invoke: Callable[[dict[str, Any]], T]) -> T:
        try:
            result = invoke(claimed.args)
        except BaseException as exc:
            self._report(request_id, "failed", _describe_exc(exc))
            raise
        self._report(request_id, "succeeded", None)
        return result

    def _report(self, request_id: str, status: Status, summary: str | None) -> None:
        try:
            self.client.outcome(request_id, status, summary)
        except InterlockError as exc:
            # It ran; the lease will turn the request `unknown` for a person to resolve.
            log.warning("interlock: could not report the outcome of %s: %s", request_id, exc)

    def _cancel_quietly(self, request_id: str, reason: str) -> None:
        with contextlib.suppress(InterlockError):
            self.client.cancel(request_id, reason)

    def _fail_open(self, body: dict[str, Any], invoke: Callable[[dict[str, Any]], T],
                   cause: StoreUnavailable) -> T:
        """The gateway is unreachable: run only what the policy marks fail_open, journaled."""
        if not self.client.fail_open(body):
            raise StoreUnavailable(f"{cause.message} (fail closed: `{body['action']}` is not "
                                   "marked fail_open)") from cause
        key = str(body["idempotency_key"])
        try:
            self.journal.started(key, body)
        except OSError as exc:
            raise StoreUnavailable(f"{cause.message}; the fail-open journal cannot be "
                                   f"written either ({exc})") from cause
        try:
            result = invoke(dict(body.get("args") or {}))
        except BaseException as exc:
            self.journal.finished(key, "failed", _describe_exc(exc))
            raise
        if inspect.isawaitable(result):
            return _journaled(result, self.journal, key)  # type: ignore[return-value]
        self.journal.finished(key, "succeeded", None)
        return result

    def _flush_if_needed(self) -> None:
        try:
            has_runs = os.path.getsize(self.journal.path) > 0
        except OSError:
            return
        if has_runs:
            self.flush_journal()

async def _journaled(result: Awaitable[Any], journal: Journal, key: str) -> Any:
    try:
        value = await result
    except BaseException as exc:
        journal.finished(key, "failed", _describe_exc(exc))
        raise
    journal.finished(key, "succeeded", None)
    return value

async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value

def _signal(state: str, snap: Snapshot, reason: str | None) -> Signal:
    kind = BY_STATE.get(state)
    if kind is None:
        return Cancelled(request_id=snap.id, action=snap.action,
                         reason=f"it is {state}, which cannot run")
    return kind(request_id=snap.id, action=snap.action, reason=reason)

def _ticket(snap: Snapshot) -> Ticket:
    return Ticket(id=snap.id, action=snap.action, decision=snap.decision, state=snap.state,
                  reasons=snap.reasons, rules=snap.rules, risk=snap.risk, version=snap.version,
                  reason=snap.reason, batch_id=snap.batch_id)

def _describe_exc(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}"[:2000] if text else type(exc).__name__

def _why_cancelled(exc: BaseException) -> str:
    if isinstance(exc, Cancelled) and exc.reason:
        return exc.reason
    if isinstance(exc, KeyboardInterrupt):
        return "the agent was interrupted while waiting (Ctrl-C)"
    if isinstance(exc, asyncio.CancelledError):
        return "the agent's task was cancelled while waiting"
    return f"the agent stopped waiting: {_describe_exc(exc)}"

def normalize_preview(value: Any) -> dict[str, Any] | None:
    """`{"kind", "content"}` from what a preview function returns (a str is text)."""
    if value is None:
        return None
    if isinstance(value, str):
        return {"kind": "text", "content": value}
    if isinstance(value, dict) and value.get("kind") in PREVIEW_KINDS and "content" in value:
        return dict(value)
    raise ValueError(
        "a preview is a str or {'kind': 'diff'|'sql'|'email'|'text'|'json', 'content': ...}"
    )

def _state(state_dir: str | os.PathLike[str] | None) -> Path:
    return Path(state_dir or os.environ.get("INTERLOCK_STATE_DIR") or ".interlock")
