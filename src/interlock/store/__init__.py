"""interlock's durable store: requests and their lifecycle, votes, the audit chain, tokens.

One contract (`Store`) over SQLAlchemy Core, on SQLite (embedded) or PostgreSQL (shared).
"""

from __future__ import annotations

from interlock.store.admin import Store, hash_secret, open_store
from interlock.store.migrate import SchemaOutdated, SchemaTooNew
from interlock.store.records import (
    CLAIMABLE,
    FINAL,
    TRANSITIONS,
    Admission,
    Agent,
    AgentPaused,
    Annotation,
    AuditEntry,
    Claim,
    Pause,
    Request,
    Reviewer,
    State,
    SweepReport,
    Token,
    VerifyReport,
    Vote,
    allowed,
)

__all__ = [
    "CLAIMABLE",
    "FINAL",
    "TRANSITIONS",
    "Admission",
    "Agent",
    "AgentPaused",
    "Annotation",
    "AuditEntry",
    "Claim",
    "Pause",
    "Request",
    "Reviewer",
    "SchemaOutdated",
    "SchemaTooNew",
    "State",
    "Store",
    "SweepReport",
    "Token",
    "VerifyReport",
    "Vote",
    "allowed",
    "hash_secret",
    "open_store",
]
