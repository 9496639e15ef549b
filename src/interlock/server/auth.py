"""Who is calling `/v1`: a Bearer token turned into a Principal, and the role checks.

Only the `Authorization` header counts; cookies (the web UI's) are ignored on `/v1`, so a
page another site opens cannot ride on a reviewer's session. Secrets never reach a log.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

from starlette.requests import Request as HttpRequest

from interlock.autonomy import INTERLOCK_AGENT
from interlock.errors import Forbidden, InterlockError
from interlock.gateway import Gateway, Principal, Role, authenticate
from interlock.store import Request


class Unauthorized(InterlockError):
    """401: no token, or one that is unknown, expired or revoked."""

    status = 401
    code = "unauthorized"


#: Seconds a looked-up token is trusted before it is read again (bounds how long a
#: revocation made by another process takes to bite; this process's own revocations
#: clear the cache at once).
TOKEN_CACHE_SECONDS = 2.0


class TokenCache:
    """Recently seen secrets -> principals, so every call does not re-read the tokens table."""

    def __init__(self, ttl: float = TOKEN_CACHE_SECONDS) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[float, Principal]] = {}

    def get(self, secret: str) -> Principal | None:
        with self._lock:
            hit = self._seen.get(secret)
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1]

    def put(self, secret: str, principal: Principal) -> None:
        with self._lock:
            if len(self._seen) > 10_000:
                self._seen.clear()
            self._seen[secret] = (time.monotonic() + self.ttl, principal)

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()


def bearer(request: HttpRequest) -> str | None:
    """The secret of an `Authorization: Bearer ...` header, if any."""
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return None
    return secret.strip()


def principal(gateway: Gateway, cache: TokenCache, secret: str | None) -> Principal:
    """The caller, or 401. Runs a store read: call it off the event loop."""
    if secret is None:
        raise Unauthorized("send `Authorization: Bearer <token>`")
    who = cache.get(secret)
    if who is None:
        who = authenticate(gateway.store, secret)
        if who is None:
            raise Unauthorized("the token is unknown, expired or revoked")
        cache.put(secret, who)
    # Expiry is checked again for cached entries: a token may expire while cached.
    return who


def _a(word: str) -> str:
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"


def require(who: Principal, *roles: Role) -> Principal:
    """403 unless `who` has one of `roles` (admins pass every reviewer check)."""
    wanted = set(roles)
    if "reviewer" in wanted:
        wanted.add("admin")
    if who.role not in wanted:
        names = " or ".join(sorted(set(roles)))
        raise Forbidden(f"this needs {_a(names)} token; this one is {_a(who.role)} token",
                        code="wrong_role")
    return who


def asked_for(request: Request, who: Principal) -> bool:
    """Whether `who` is the admin who asked for one of interlock's own gated changes (an
    autonomy level, a policy change, a token): a second admin decides it, never they.

    The rule `Gateway.decide` refuses a vote by (`self_approval`); the API and the pages
    use this to say so before anyone tries."""
    return request.agent == INTERLOCK_AGENT and (
        request.action.get("args", {}).get("requested_by") == who.name
    )


def approvers_of(request: Request, defaults: Iterable[str]) -> set[str]:
    """Every group or `user:NAME` that could ever decide a request."""
    names: set[str] = set()
    reqs = request.requirements
    if reqs is None:
        names.update(defaults)
        return names
    for gate in reqs.gates:
        names.update(gate.escalate_to)
        for stage in gate.stages:
            names.update(stage.approvers)
    for gate_progress in request.progress.get("gates", []):
        for st in gate_progress.get("stages", []):
            names.update(st.get("extra", []))
    return names


def may_act_on(who: Principal, request: Request, defaults: Iterable[str]) -> bool:
    """Whether a reviewer may resolve, review or rate a request (admins always may)."""
    if who.role == "admin":
        return True
    if who.role != "reviewer" or who.name == request.agent:
        return False
    names = approvers_of(request, defaults)
    return f"user:{who.name}" in names or any(g in names for g in who.groups)


def check_may_act_on(who: Principal, request: Request, defaults: Iterable[str]) -> None:
    """403 unless `may_act_on`."""
    if who.role == "agent":
        raise Forbidden("agents do not review requests", code="wrong_role")
    if not may_act_on(who, request, defaults):
        raise Forbidden(f"`{who.name}` is not among the approvers of request `{request.id}`",
                        code="not_an_approver")
