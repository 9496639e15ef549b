"""Notifications: people hear of requests that need them where they already work.

The server calls `routes()` for the Slack endpoint and `start()` for the dispatcher; both read
the configuration file named by `INTERLOCK_NOTIFY` (see docs/notifications.md).
"""

from __future__ import annotations

from starlette.routing import BaseRoute

from interlock.gateway import Gateway
from interlock.notify import slack
from interlock.notify.config import (
    ENV_VAR,
    NotifyConfig,
    NotifyConfigError,
    Target,
    from_environment,
    load_config,
    parse_config,
)
from interlock.notify.dispatcher import Dispatcher
from interlock.notify.notice import Notice
from interlock.notify.webhook import verify
from interlock.server.settings import ServerSettings

__all__ = [
    "ENV_VAR",
    "Dispatcher",
    "Idle",
    "Notice",
    "NotifyConfig",
    "NotifyConfigError",
    "Target",
    "from_environment",
    "load_config",
    "parse_config",
    "routes",
    "start",
    "verify",
]


class Idle:
    """What `start` returns when there is nothing to dispatch."""

    def stop(self) -> None:
        """Nothing runs, so nothing stops."""


def routes(gateway: Gateway, settings: ServerSettings) -> list[BaseRoute]:
    """The Slack interactivity endpoint, when the configuration has a `slack` section."""
    config = from_environment()
    return slack.routes(gateway, None if config is None else config.slack)


def start(
    gateway: Gateway, settings: ServerSettings, *, background: bool = True
) -> Dispatcher | Idle:
    """Start the dispatcher thread when targets are configured; call `.stop()` on shutdown."""
    config = from_environment()
    if not background or config is None or not config.targets:
        return Idle()
    return Dispatcher(gateway, config).start()
