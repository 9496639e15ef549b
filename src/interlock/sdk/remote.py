"""Remote mode: the Client seam over interlock's HTTP API (SPEC §5), with httpx.

Retries back off and resend the same body, so a submit keeps its idempotency key and a
network error never creates a second request; a claim is resent only if it never left.
"""

from __future__ import annotations

import random
import time
from typing import Any
from urllib.parse import urlsplit

import httpx

from interlock.errors import (
    BadInput,
    Conflict,
    Forbidden,
    Gone,
    InterlockError,
    NotFound,
    StoreUnavailable,
    TooLarge,
    TooMany,
)
from interlock.policy import Policy
from interlock.policy.records import Decision
from interlock.sdk.client import OPEN_STATES, Claimed, Snapshot, Status
from interlock.sdk.journal import Tickets

#: The server answers a wait after at most this many seconds (SPEC §5).
MAX_WAIT = 60.0
_ERRORS: dict[int, type[InterlockError]] = {
    400: BadInput, 401: Forbidden, 403: Forbidden, 404: NotFound, 409: Conflict, 410: Gone,
    413: TooLarge, 422: BadInput, 429: TooMany,
}
_RETRY_STATUS = frozenset({502, 503, 504})


class RemoteClient:
    """Talks to `interlock serve` as one agent token."""

    def __init__(
        self,
        url: str,
        *,
        token: str,
        agent: str | None = None,
        policy: Policy | None = None,
        retries: int = 5,
        backoff: float = 0.1,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        tickets: Tickets | None = None,
    ) -> None:
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            # a configuration error, not an outage: it must not pass for an unreachable
            # server, under which `fail_open` actions would run
            raise BadInput(f"the interlock server's URL is an http(s) URL such as "
                           f"http://127.0.0.1:8765, not `{url}`")
        if not token.strip():
            raise BadInput("a token is required: the agent token `interlock token create "
                           "--agent NAME` printed")
        self.url = url.strip().rstrip("/")
        self.agent: str | None = agent
        self.policy = policy
        self.retries = retries
        self.backoff = backoff
        self._http = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {token}"},
            timeout=timeout, transport=transport,
        )
        self._ids: dict[str, str] = {}
        self._tickets = tickets

    # -- the wire -----------------------------------------------------------------------

    def _send(
        self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None,
        timeout: float | None = None, replayable: bool = True,
    ) -> Any:
        """One call with retries. `replayable`: a resend cannot cause a second effect."""
        attempt = 0
        while True:
            try:
                kwargs: dict[str, Any] = {}
                if timeout is not None:
                    kwargs["timeout"] = timeout
                resp = self._http.request(method, path, json=body, params=params, **kwargs)
            except httpx.TransportError as exc:
                never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout
                                        | httpx.PoolTimeout)
                if (replayable or never_sent) and attempt < self.retries:
                    self._sleep(attempt)
                    attempt += 1
                    continue
                raise StoreUnavailable(
                    f"interlock at {self.url} cannot be reached ({type(exc).__name__}: {exc}); "
                    "the action did not run"
                ) from exc
            if resp.status_code in _RETRY_STATUS and replayable and attempt < self.retries:
                self._sleep(attempt)
                attempt += 1
                continue
            if resp.status_code >= 400:
                raise _error(resp)
            return resp.json() if resp.content else {}

    def _sleep(self, attempt: int) -> None:
        delay = min(self.backoff * (2**attempt), 2.0)
        time.sleep(delay * (0.5 + random.random() / 2))

    # -- the Client seam ----------------------------------------------------------------

    def submit(self, body: dict[str, Any]) -> Snapshot:
        data = self._send("POST", "/v1/actions", body=body)
        snap = _snapshot(data, default_action=str(body.get("action", "")))
        self._ids[snap.id] = snap.action
        return snap

    def submit_claiming(self, body: dict[str, Any]) -> tuple[Snapshot, Claimed | None]:
        # Over HTTP the claim stays its own call: the API has no combined endpoint.
        return self.submit(body), None

    def get(self, request_id: str) -> Snapshot:
        return self._remember(self._send("GET", f"/v1/actions/{request_id}"), request_id)

    def wait(self, request_id: str, timeout: float) -> Snapshot:
        seconds = max(0.0, min(timeout, MAX_WAIT))
        data = self._send("GET", f"/v1/actions/{request_id}/wait",
                          params={"timeout": f"{seconds:g}"}, timeout=seconds + 10.0)
        return self._remember(data, request_id)

    def claim(self, request_id: str) -> Claimed:
        data = self._send("POST", f"/v1/actions/{request_id}/claim", body={},
                          replayable=False)
        return Claimed(args=dict(data.get("args") or {}), checkpoint=data.get("checkpoint"),
                       lease_expires_at=float(data.get("lease_expires_at") or 0.0),
                       digest=str(data.get("digest") or ""))

    def outcome(self, request_id: str, status: Status, summary: str | None) -> None:
        try:
            self._send("POST", f"/v1/actions/{request_id}/outcome",
                       body={"status": status, "summary": summary})
        except Conflict:
            # A resend after a lost answer finds the outcome already recorded.
            if self.get(request_id).state != status:
                raise

    def cancel(self, request_id: str, reason: str | None) -> None:
        try:
            self._send("POST", f"/v1/actions/{request_id}/cancel", body={"reason": reason})
        except Conflict:
            if self.get(request_id).state != "cancelled":
                raise

    def open_requests(self) -> list[Snapshot]:
        # SPEC §5 has no agent-side listing: the tickets file keeps the ids submitted here.
        ids = self._tickets.ids() if self._tickets is not None else list(self._ids)
        found, ended = [], set()
        for rid in ids:
            try:
                snap = self.get(rid)
            except NotFound:
                ended.add(rid)
                continue
            if snap.state in OPEN_STATES:
                found.append(snap)
            else:
                ended.add(rid)
        if self._tickets is not None:
            self._tickets.forget(ended)
        return found

    def track(self, request_id: str) -> None:
        """Remember a durable ticket so that `open_requests` reports it in later processes."""
        self._ids.setdefault(request_id, "")
        if self._tickets is not None:
            self._tickets.add(request_id)

    def fail_open(self, body: dict[str, Any]) -> bool:
        if self.policy is None or self.agent is None:
            return False  # no local copy of the policy: nothing may run unaudited
        action = {**body, "agent": self.agent}
        result = self.policy.evaluate(action)
        return result.fail_open and result.decision in (Decision.ALLOW, Decision.NOTIFY)

    def close(self) -> None:
        self._http.close()

    def _remember(self, data: Any, request_id: str) -> Snapshot:
        return _snapshot(data, default_action=self._ids.get(request_id, ""), rid=request_id)


def _error(resp: httpx.Response) -> InterlockError:
    code, message = "error", resp.text[:500] or resp.reason_phrase
    try:
        err = resp.json().get("error") or {}
        code = str(err.get("code") or code)
        message = str(err.get("message") or message)
    except (ValueError, AttributeError):
        pass
    cls = _ERRORS.get(resp.status_code)
    if cls is None:
        cls = StoreUnavailable if resp.status_code >= 500 else BadInput
        message = f"interlock answered {resp.status_code}: {message}"
    if cls is TooMany:
        try:
            after: float | None = float(resp.headers.get("retry-after", ""))
        except ValueError:
            after = None
        return TooMany(message, code=code if code != "error" else None, retry_after=after)
    return cls(message, code=code if code != "error" else None)


def _snapshot(data: Any, *, default_action: str = "", rid: str = "") -> Snapshot:
    """A Snapshot from the API's JSON, reading the few fields it needs wherever they are."""
    if not isinstance(data, dict):
        raise StoreUnavailable(f"interlock answered something that is not a request: {data!r}")
    inner = data.get("request")
    request: dict[str, Any] = inner if isinstance(inner, dict) else data
    found = request.get("result")
    result: dict[str, Any] = found if isinstance(found, dict) else {}
    action = request.get("action")
    name = action.get("action") if isinstance(action, dict) else action
    name = name or request.get("action_name") or default_action

    def pick(key: str, default: Any = None) -> Any:
        value = request.get(key)
        return result.get(key, default) if value is None else value

    return Snapshot(
        id=str(request.get("id") or rid), action=str(name), state=str(request["state"]),
        decision=str(pick("decision", "")), reasons=tuple(pick("reasons", ()) or ()),
        rules=tuple(pick("rules", ()) or ()), risk=str(pick("risk", "medium")),
        version=int(request.get("version") or 0), reason=request.get("reason"),
        batch_id=request.get("batch_id"), fail_open=bool(pick("fail_open", False)),
    )
