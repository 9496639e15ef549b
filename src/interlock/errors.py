"""The exceptions interlock raises, and the one JSON shape errors take over HTTP.

    InterlockError                 base of every error interlock raises on purpose
    ├── PolicyError                a policy file or policy test file that does not load;
    │                              carries every Diagnostic (file:line:col: message) at once
    ├── BadInput                   400/422: a request, action or argument that is malformed
    ├── NotFound                   404: no such request (or not yours to see)
    ├── Forbidden                  403: the token may not do this
    ├── Conflict                   409: a compare-and-set lost (state moved, stale version,
    │                              idempotency key reused with another body, already claimed)
    ├── Gone                       410: the request ended (denied, expired, cancelled, ...)
    ├── TooLarge                   413: a body over the size limit
    ├── TooMany                    429: pending or rate limit reached
    └── StoreUnavailable           503: the store cannot be reached or written (fail closed)

Control-flow signals raised to an agent's code (Denied, Expired, ...) live in the SDK
and are not errors of interlock's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True, kw_only=True)
class Diagnostic:
    """One problem found in a file, pointing at where it is."""

    file: str
    """The path as given by the user."""
    line: int
    """1-based line."""
    col: int
    """1-based column."""
    message: str
    """Plain words, lowercase first, user input in backticks."""
    severity: str = "error"
    """`error` (the file does not load) or `warning` (it loads, but look)."""

    def __str__(self) -> str:
        tag = "" if self.severity == "error" else "warning: "
        return f"{self.file}:{self.line}:{self.col}: {tag}{self.message}"


class InterlockError(Exception):
    """Base of every error interlock raises on purpose."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code  # type: ignore[misc]

    def to_json(self) -> dict[str, Any]:
        """The one error shape: `{"error": {"code", "message"}}`."""
        return {"error": {"code": self.code, "message": self.message}}


class PolicyError(InterlockError):
    """A policy (or policy test) file that does not load; holds every diagnostic."""

    code = "invalid_policy"
    status = 422

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = [d for d in diagnostics if d.severity == "error"]
        self.warnings = [d for d in diagnostics if d.severity != "error"]
        super().__init__("\n".join(str(d) for d in self.diagnostics))


class BadInput(InterlockError):
    status = 422
    code = "invalid_input"


class NotFound(InterlockError):
    status = 404
    code = "not_found"


class Forbidden(InterlockError):
    status = 403
    code = "forbidden"


class Conflict(InterlockError):
    status = 409
    code = "conflict"


class Gone(InterlockError):
    status = 410
    code = "gone"


class TooLarge(InterlockError):
    status = 413
    code = "too_large"


class TooMany(InterlockError):
    status = 429
    code = "too_many"

    def __init__(self, message: str, *, code: str | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after
        """Seconds until a new action would pass, where that is known (the rate limit)."""


class StoreUnavailable(InterlockError):
    status = 503
    code = "store_unavailable"
