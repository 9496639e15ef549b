"""Settings the server's parts share: links, the UI's signing key, limits on bodies."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from interlock import jsonvalue


@dataclass(frozen=True, kw_only=True)
class ServerSettings:
    """What `interlock serve` decides once and every part of the server reads."""

    public_url: str = ""
    """Base of links sent to people (`--public-url`); empty: relative links."""
    secret_key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    """Signs UI session cookies and CSRF tokens; new per process unless configured."""
    max_body: int = jsonvalue.MAX_BODY
    """Request bodies over this many bytes are refused with 413."""
    max_depth: int = jsonvalue.MAX_DEPTH
    """JSON nested deeper than this is refused with 422."""
    secure_cookies: bool = False
    """Mark cookies `Secure` (set when `public_url` is https)."""
    sweep_interval: float = 1.0
    """Seconds between runs of the store's sweeper inside the server."""
