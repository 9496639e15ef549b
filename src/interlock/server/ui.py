"""The reviewer web UI (placeholder until the UI lands): routes mounted beside `/v1`."""

from __future__ import annotations

from starlette.routing import BaseRoute

from interlock.gateway import Gateway
from interlock.server.settings import ServerSettings


def routes(gateway: Gateway, settings: ServerSettings) -> list[BaseRoute]:
    """The UI's routes; mounted after the API's, so `/v1` always wins."""
    return []
