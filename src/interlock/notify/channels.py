"""Sending one notice to one target: Apprise URLs, signed webhooks, Slack messages.

Each sender raises `DeliveryFailed` when the target did not take the notice.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from typing import Any

from interlock.notify import slack, webhook
from interlock.notify.config import Target
from interlock.notify.notice import Notice
from interlock.notify.webhook import DeliveryFailed

#: A sender: (target, notice, now, timeout) -> None, raising DeliveryFailed.
Sender = Callable[[Target, Notice, float, float], None]

_apprise_lock = threading.Lock()


def _apprise() -> Any:
    """The apprise module, its plugins loaded once.

    Apprise's e-mail plugin imports the deprecated `imghdr`; that warning is apprise's own,
    so it is silenced while the plugins load and nowhere else."""
    try:
        import apprise
    except ImportError:
        raise DeliveryFailed("apprise is not installed: pip install 'interlock[notify]'") \
            from None
    with _apprise_lock, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        apprise.Apprise().add("json://localhost/")
    return apprise


def check_apprise_url(url: str) -> bool:
    """Whether Apprise understands `url` (checked when the configuration loads)."""
    apprise = _apprise()
    return bool(apprise.Apprise().add(url))


def send_apprise(target: Target, notice: Notice, now: float, timeout: float) -> None:
    apprise = _apprise()
    sink = apprise.Apprise()
    if not sink.add(target.url):
        raise DeliveryFailed(f"apprise does not understand the URL of target `{target.name}`")
    ok = sink.notify(title=notice.title, body=notice.text(),
                     body_format=apprise.NotifyFormat.TEXT)
    if not ok:
        raise DeliveryFailed(f"apprise could not deliver to target `{target.name}`")


def send_webhook(target: Target, notice: Notice, now: float, timeout: float) -> None:
    webhook.send(target, notice, now=now, timeout=timeout)


def send_slack(target: Target, notice: Notice, now: float, timeout: float) -> None:
    slack.send(target, notice, timeout=timeout)


SENDERS: dict[str, Sender] = {
    "apprise": send_apprise,
    "webhook": send_webhook,
    "slack": send_slack,
}
