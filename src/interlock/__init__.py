"""interlock: a human-in-the-loop approval gateway for AI agents.

    from interlock import Action, Gate, Denied

`import interlock` stays light: the SDK loads on first use of one of its names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Action",
    "AlreadyClaimed",
    "Cancelled",
    "ChangesRequested",
    "Denied",
    "Expired",
    "Gate",
    "ReviewDecision",
    "ReviewRequest",
    "Signal",
    "StillPending",
    "SuggestOnly",
    "Ticket",
    "__version__",
]

if TYPE_CHECKING:
    from interlock.sdk import (
        Action,
        AlreadyClaimed,
        Cancelled,
        ChangesRequested,
        Denied,
        Expired,
        Gate,
        ReviewDecision,
        ReviewRequest,
        Signal,
        StillPending,
        SuggestOnly,
        Ticket,
    )


def __getattr__(name: str) -> Any:
    if name in __all__:
        import interlock.sdk as sdk

        value = getattr(sdk, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'interlock' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
