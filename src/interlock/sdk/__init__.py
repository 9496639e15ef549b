"""The Python SDK: `Gate` puts interlock in front of an agent's actions, embedded or remote.

Public names are re-exported from `interlock`; the modules here are the seams behind them.
"""

from __future__ import annotations

from interlock.sdk.action import Action, Resumed, Ticket
from interlock.sdk.channels import (
    CallbackChannel,
    Channel,
    ReviewDecision,
    ReviewRequest,
    TerminalChannel,
    WebChannel,
)
from interlock.sdk.gate import Gate
from interlock.sdk.signals import (
    AlreadyClaimed,
    Cancelled,
    ChangesRequested,
    Denied,
    Expired,
    Signal,
    StillPending,
    SuggestOnly,
)

__all__ = [
    "Action",
    "AlreadyClaimed",
    "CallbackChannel",
    "Cancelled",
    "ChangesRequested",
    "Channel",
    "Denied",
    "Expired",
    "Gate",
    "Resumed",
    "ReviewDecision",
    "ReviewRequest",
    "Signal",
    "StillPending",
    "SuggestOnly",
    "TerminalChannel",
    "Ticket",
    "WebChannel",
]
