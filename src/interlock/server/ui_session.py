"""Reviewer sessions for the web UI: a signed cookie, CSRF tokens, and form parsing.

The cookie names a token by id, never its secret, and is signed with HMAC-SHA256.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import Response

from interlock.errors import BadInput, TooLarge
from interlock.gateway import Principal
from interlock.server.settings import ServerSettings
from interlock.store import Store

COOKIE = "interlock_session"
#: How long a sign-in lasts before the reviewer must sign in again.
SESSION_SECONDS = 12 * 3600
#: Anonymous sessions only carry the sign-in form's CSRF token.
ANON_SECONDS = 3600


@dataclass(frozen=True, kw_only=True)
class Session:
    """What the cookie says: a random id, the token signed in with, and when it ends."""

    sid: str
    """Random per sign-in; CSRF tokens are derived from it."""
    token_id: str | None
    """The reviewer's or admin's token id; None before sign-in."""
    expires: float
    """Unix time after which the cookie is ignored."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sessions:
    """Encodes, checks and sets the session cookie; derives and checks CSRF tokens."""

    def __init__(self, settings: ServerSettings, store: Store) -> None:
        self.settings = settings
        self.store = store
        key = settings.secret_key
        self._key = hmac.new(key, b"interlock-ui-session", hashlib.sha256).digest()
        self._csrf_key = hmac.new(key, b"interlock-ui-csrf", hashlib.sha256).digest()

    def new(self, token_id: str | None) -> Session:
        """A fresh session (a new id on every sign-in, so a planted cookie is worthless)."""
        ttl = SESSION_SECONDS if token_id is not None else ANON_SECONDS
        return Session(sid=secrets.token_urlsafe(16), token_id=token_id,
                       expires=self.store.clock.now() + ttl)

    def encode(self, session: Session) -> str:
        payload = _b64(json.dumps(
            {"sid": session.sid, "tid": session.token_id, "exp": session.expires},
            separators=(",", ":"),
        ).encode())
        sig = _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())
        return f"{payload}.{sig}"

    def decode(self, value: str | None) -> Session | None:
        """The session a cookie carries, or None if missing, forged or expired."""
        if not value or "." not in value or len(value) > 4096:
            return None
        payload, sig = value.rsplit(".", 1)
        want = _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(sig, want):
            return None
        try:
            data = json.loads(_unb64(payload))
            session = Session(sid=str(data["sid"]), token_id=data["tid"],
                              expires=float(data["exp"]))
        except (ValueError, KeyError, TypeError):
            return None
        if session.expires <= self.store.clock.now():
            return None
        return session

    def read(self, request: Request) -> Session | None:
        return self.decode(request.cookies.get(COOKIE))

    def principal(self, session: Session | None) -> Principal | None:
        """The reviewer or admin a session stands for, if its token still works: read on
        every request, so revoking a token ends its sessions at once."""
        if session is None or session.token_id is None:
            return None
        token = next((t for t in self.store.tokens() if t.id == session.token_id), None)
        if token is None or token.revoked_at is not None or token.kind == "agent":
            return None
        if token.expires_at is not None and token.expires_at <= self.store.clock.now():
            return None
        return Principal(role=token.kind, name=token.name, groups=token.groups,
                         token_id=token.id)

    def set_cookie(self, response: Response, session: Session) -> None:
        # Lax, not Strict: review links arrive from chat and email (other sites), and a
        # Strict cookie is not sent on that first navigation. POSTs need the CSRF token.
        response.set_cookie(
            COOKIE, self.encode(session),
            max_age=max(1, int(session.expires - self.store.clock.now())),
            httponly=True, samesite="lax", secure=self.settings.secure_cookies, path="/",
        )

    def clear_cookie(self, response: Response) -> None:
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax",
                               secure=self.settings.secure_cookies)

    # -- CSRF ---------------------------------------------------------------------------

    def csrf_token(self, session: Session) -> str:
        """The CSRF token every form of this session carries."""
        return _b64(hmac.new(self._csrf_key, session.sid.encode(), hashlib.sha256).digest())

    def csrf_ok(self, session: Session | None, sent: str | None) -> bool:
        if session is None or not sent:
            return False
        return hmac.compare_digest(self.csrf_token(session), sent)


async def read_form(request: Request, limit: int) -> dict[str, str]:
    """An urlencoded form body as {name: last value}; refuses bodies over `limit` bytes."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("application/x-www-form-urlencoded", ""):
        raise BadInput("send this form as application/x-www-form-urlencoded")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise TooLarge(f"the form is larger than {limit} bytes")
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError as exc:
        raise BadInput("the form is not valid UTF-8") from exc
    return {k: v[-1] for k, v in parsed.items()}


def form_list(request_form: dict[str, Any], prefix: str) -> dict[str, str]:
    """Fields named `prefix<key>` as {key: value} (e.g. per-item batch verdicts)."""
    return {k[len(prefix):]: str(v) for k, v in request_form.items() if k.startswith(prefix)}
