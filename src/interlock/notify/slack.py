"""Slack: messages with approve/deny buttons, and the endpoint their clicks arrive at.

A click is trusted only with a valid Slack request signature, decides as the reviewer the
configuration maps the Slack user to, and never approves a request needing typed confirmation.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
from typing import Any
from urllib.parse import parse_qs

import httpx
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from interlock import jsonvalue
from interlock.errors import BadInput, InterlockError
from interlock.gateway import Gateway, Principal
from interlock.notify.config import SlackSettings, SlackUser, Target
from interlock.notify.notice import Notice, clip, iso
from interlock.notify.webhook import DeliveryFailed

PATH = "/integrations/slack/actions"
APPROVE = "interlock.approve"
DENY = "interlock.deny"
POST_MESSAGE = "https://slack.com/api/chat.postMessage"
#: Slack's own answer address for a click; replies go there only on this host.
RESPONSE_URL_PREFIX = "https://hooks.slack.com/"
TOLERANCE = 300.0


def escape(text: str) -> str:
    """Slack mrkdwn escaping: agent text can neither link nor mention anyone."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def button_value(notice: Notice) -> str:
    """What a button carries: the request and the digest of what the message showed."""
    return f"{notice.request_id}:{notice.digest[:16]}"


def message(notice: Notice) -> dict[str, Any]:
    """The Slack message for a notice: the facts, then buttons while a person can decide."""
    where = f" in *{escape(clip(notice.environment))}*" if notice.environment else ""
    lines = [
        f"*{escape(notice.title.removeprefix('interlock: '))}*",
        f"`{escape(clip(notice.action))}`{where} by agent `{escape(clip(notice.agent))}`, "
        f"risk *{notice.risk}*",
        f"Approvers: {escape(', '.join(notice.approvers) or '-')}",
    ]
    if notice.deadline is not None:
        lines.append(f"Deadline: <!date^{int(notice.deadline)}^{{date_short_pretty}} {{time}}"
                     f"|{iso(notice.deadline)}>")
    if notice.reason:
        lines.append(f"Reason: {escape(clip(notice.reason))}")
    if notice.confirm and notice.kind != "expired":
        lines.append("Approving needs the typed confirmation phrase: open the review page.")
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}},
    ]
    buttons: list[dict[str, Any]] = []
    if notice.kind != "expired":
        if not notice.confirm:
            buttons.append({"type": "button", "action_id": APPROVE, "style": "primary",
                            "text": {"type": "plain_text", "text": "Approve"},
                            "value": button_value(notice)})
        buttons.append({"type": "button", "action_id": DENY, "style": "danger",
                        "text": {"type": "plain_text", "text": "Deny"},
                        "value": button_value(notice)})
    buttons.append({"type": "button", "action_id": "interlock.open",
                    "text": {"type": "plain_text", "text": "Review"}, "url": notice.link})
    blocks.append({"type": "actions", "elements": buttons})
    return {"text": escape(notice.title), "blocks": blocks}


def send(target: Target, notice: Notice, *, timeout: float) -> None:
    """Post to an incoming webhook (`slack: URL`) or via `chat.postMessage` (bot token)."""
    body = message(notice)
    headers: dict[str, str] = {}
    url = target.url
    if not url:
        url = POST_MESSAGE
        body["channel"] = target.channel
        headers["Authorization"] = f"Bearer {target.secret}"
    try:
        answer = httpx.post(url, json=body, headers=headers, timeout=timeout,
                            follow_redirects=False)
    except httpx.HTTPError as exc:
        raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from None
    if not 200 <= answer.status_code < 300:
        raise DeliveryFailed(f"Slack answered {answer.status_code}")
    if not target.url:
        try:
            ok = bool(answer.json().get("ok"))
        except ValueError:
            ok = False
        if not ok:
            raise DeliveryFailed(f"Slack refused the message: {answer.text[:200]}")


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Slack's request signature: `v0=` + hex HMAC-SHA256 of `v0:{timestamp}:{body}`."""
    mac = hmac.new(secret.encode(), f"v0:{timestamp}:".encode() + body, hashlib.sha256)
    return f"v0={mac.hexdigest()}"


def verify(secret: str, timestamp: str, body: bytes, signature: str, *, now: float,
           tolerance: float = TOLERANCE) -> bool:
    """Whether a request is Slack's: a valid signature, sent within `tolerance` seconds."""
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs(now - sent) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def routes(gateway: Gateway, slack: SlackSettings | None) -> list[BaseRoute]:
    """The interactivity endpoint, when Slack is configured."""
    if slack is None:
        return []

    async def actions(request: HttpRequest) -> Response:
        body = await request.body()
        ok = verify(slack.signing_secret,
                    request.headers.get("x-slack-request-timestamp", ""), body,
                    request.headers.get("x-slack-signature", ""),
                    now=gateway.store.clock.now())
        if not ok:
            return JSONResponse({"error": {"code": "bad_signature", "message":
                                           "the Slack request signature does not verify"}},
                                status_code=401)
        try:
            # strict: a signed payload nested past the limit is refused, not a RecursionError
            payload = jsonvalue.loads(parse_qs(body.decode())["payload"][0])
            user_id = str(payload["user"]["id"])
            clicked = payload["actions"][0]
            action_id = str(clicked["action_id"])
            value = str(clicked.get("value", ""))
        except (BadInput, KeyError, IndexError, TypeError, ValueError, UnicodeDecodeError):
            return _reply("interlock could not read this interaction.")
        if action_id not in (APPROVE, DENY):
            return Response(status_code=200)  # the link button: nothing to do
        text, done = await run_in_threadpool(_decide, gateway, slack, user_id, action_id, value)
        url = payload.get("response_url")
        task = None
        if done and isinstance(url, str) and url.startswith(RESPONSE_URL_PREFIX):
            task = BackgroundTask(_update_message, url, text)
        return _reply(text, background=task)

    return [Route(PATH, actions, methods=["POST"])]


def _reply(text: str, background: BackgroundTask | None = None) -> JSONResponse:
    return JSONResponse({"response_type": "ephemeral", "replace_original": False, "text": text},
                        background=background)


def _update_message(url: str, text: str) -> None:
    # The original message loses its buttons once the click has decided.
    with contextlib.suppress(httpx.HTTPError):
        httpx.post(url, json={"replace_original": True, "text": text}, timeout=5.0)


def _decide(gateway: Gateway, slack: SlackSettings, user_id: str, action_id: str,
            value: str) -> tuple[str, bool]:
    """(the answer to show, whether a vote was cast)."""
    user = slack.users.get(user_id)
    if user is None:
        return ("Your Slack account is not linked to an interlock reviewer; "
                "ask an admin to add it under `slack.users`.", False)
    rid, _, digest = value.partition(":")
    link = gateway.link(rid)
    principal = _principal(gateway, user)
    if principal is None:
        return (f"`{escape(user.name)}` has no live reviewer token in interlock.", False)
    try:
        request = gateway.get(rid, principal)
        if digest and not request.digest.startswith(digest):
            return (f"The request changed since this message; review it on <{link}|its page>.",
                    False)
        if action_id == APPROVE:
            if request.requirements is not None and request.requirements.confirm:
                return (f"This request needs its confirmation phrase typed; approve it on "
                        f"<{link}|the review page>.", False)
            after = gateway.decide(rid, principal, "approve")
        else:
            after = gateway.decide(rid, principal, "deny",
                                   note=f"denied in Slack by {user.name}")
    except InterlockError as exc:
        return (f"Not recorded: {escape(exc.message)} (<{link}|open the request>)", False)
    verb = "Approved" if action_id == APPROVE else "Denied"
    return (f"{verb} by {escape(user.name)}: `{escape(clip(request.action_name))}` is now "
            f"{after.state.value} (<{link}|open the request>).", True)


def _principal(gateway: Gateway, user: SlackUser) -> Principal | None:
    """The reviewer a Slack user acts as; groups from the config, else from live tokens."""
    if user.groups is not None:
        return Principal(role="reviewer", name=user.name, groups=user.groups)
    now = gateway.store.clock.now()
    groups: list[str] = []
    live = False
    for token in gateway.store.tokens():
        if (token.kind != "reviewer" or token.name != user.name or token.revoked_at is not None
                or (token.expires_at is not None and token.expires_at <= now)):
            continue
        live = True
        groups.extend(g for g in token.groups if g not in groups)
    if not live:
        return None
    return Principal(role="reviewer", name=user.name, groups=tuple(groups))

