"""HMAC-signed JSON webhooks, and `verify` for the systems that receive them.

The signature is `v1=` + hex HMAC-SHA256 of `"<timestamp>.<body>"` under the shared secret,
sent with the timestamp so a receiver can refuse both forgeries and old replays.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import httpx

from interlock.notify.config import Target
from interlock.notify.notice import Notice

TIMESTAMP_HEADER = "X-Interlock-Timestamp"
SIGNATURE_HEADER = "X-Interlock-Signature"
EVENT_HEADER = "X-Interlock-Event"


class DeliveryFailed(Exception):
    """A target did not take a notification; the dispatcher retries it later."""


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """The signature header's value for a body sent at `timestamp` (Unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"v1={mac.hexdigest()}"


def verify(
    secret: str,
    timestamp: str | int,
    body: bytes | str,
    signature: str,
    tolerance: float = 300,
    *,
    now: float | None = None,
) -> bool:
    """Whether `signature` (the `X-Interlock-Signature` header) signs `body` at `timestamp`
    (the `X-Interlock-Timestamp` header) under `secret`, and the timestamp is within
    `tolerance` seconds of `now` (default: the wall clock).

    The header may carry several comma-separated `v1=` values (during a secret rotation);
    any one matching is enough."""
    raw = body.encode() if isinstance(body, str) else body
    try:
        sent = int(str(timestamp).strip())
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - sent) > tolerance:
        return False
    expected = sign(secret, sent, raw)
    return any(hmac.compare_digest(expected, part.strip())
               for part in signature.split(",") if part.strip().startswith("v1="))


def body_of(notice: Notice) -> bytes:
    """The JSON body a webhook receives: the event id, its kind and the notice."""
    doc = {"id": notice.id, "type": f"request.{notice.kind}", "notice": notice.to_json()}
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def send(target: Target, notice: Notice, *, now: float, timeout: float) -> None:
    """POST the signed notice; anything but a 2xx answer is a failed attempt."""
    body = body_of(notice)
    stamp = int(now)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "interlock-notify",
        TIMESTAMP_HEADER: str(stamp),
        SIGNATURE_HEADER: sign(target.secret, stamp, body),
        EVENT_HEADER: notice.id,
    }
    try:
        answer = httpx.post(target.url, content=body, headers=headers, timeout=timeout,
                            follow_redirects=False)
    except httpx.HTTPError as exc:
        raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from None
    if not 200 <= answer.status_code < 300:
        raise DeliveryFailed(f"the receiver answered {answer.status_code}")
