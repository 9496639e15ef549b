"""The audit chain: canonical JSON, how an entry is hashed onto the chain, and how it is verified.

Verification hashes the stored entry text itself and cross-checks the indexed columns against it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring
from typing import Any

from interlock.store.records import AuditEntry, VerifyReport

GENESIS = "0" * 64

_dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
_loads = json.loads
_str = encode_basestring
_sha256 = hashlib.sha256


def canonical(obj: Any) -> str:
    """The one JSON text of `obj`: sorted keys, no spaces, UTF-8 kept."""
    return _dumps(obj)


def sha256_hex(text: str) -> str:
    """Hex sha256 of UTF-8 text."""
    return _sha256(text.encode()).hexdigest()


def link(prev_hash: str, entry_text: str) -> str:
    """The hash of an entry: sha256(prev_hash + canonical JSON of the entry)."""
    return _sha256((prev_hash + entry_text).encode()).hexdigest()


@dataclass(kw_only=True, slots=True)
class Pending:
    """An entry written in the current transaction, before it has a place in the chain."""

    at: float
    actor: str
    event: str
    request_id: str | None
    digest: str | None
    data: dict[str, Any]


def chain(head_seq: int, head_hash: str, pending: Sequence[Pending]) -> list[dict[str, Any]]:
    """Rows for the audit table that continue the chain after (head_seq, head_hash)."""
    rows: list[dict[str, Any]] = []
    prev = head_hash
    seq = head_seq
    for p in pending:
        seq += 1
        entry = canonical(
            {
                "seq": seq,
                "at": float(p.at),
                "actor": p.actor,
                "event": p.event,
                "request_id": p.request_id,
                "digest": p.digest,
                "data": p.data,
            }
        )
        h = link(prev, entry)
        rows.append(
            {
                "seq": seq,
                "at": p.at,
                "actor": p.actor,
                "event": p.event,
                "request_id": p.request_id,
                "digest": p.digest,
                "entry": entry,
                "prev_hash": prev,
                "hash": h,
            }
        )
        prev = h
    return rows


def to_entry(row: Sequence[Any]) -> AuditEntry:
    """An AuditEntry from a row in `VERIFY_COLUMNS` order."""
    body = _loads(row[6])
    return AuditEntry(
        seq=int(row[0]),
        at=float(row[1]),
        actor=row[2],
        event=row[3],
        request_id=row[4],
        digest=row[5],
        data=body.get("data", {}),
        prev_hash=row[7],
        hash=row[8],
    )


#: Column order `verify` expects.
VERIFY_COLUMNS = "seq, at, actor, event, request_id, digest, entry, prev_hash, hash"


def verify(
    rows: Iterable[Sequence[Any]],
    *,
    head: tuple[int, str] | None,
    anchor: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Walk rows in seq order; report the first entry edited, removed or reordered.

    `head` is the chain-head row (seq, hash) the writers maintain; `anchor` a hash printed
    earlier by `audit anchor`, which must still be on the chain.
    """
    expected = 1
    prev = GENESIS
    found = anchor is None or anchor == GENESIS
    step = 0
    for seq, at, actor, event, request_id, digest, entry, prev_hash, h in rows:
        if seq != expected:
            where = expected if seq > expected else seq
            what = "is missing" if seq > expected else "is out of order"
            return _bad(expected - 1, prev, where, f"entry {where} {what}")
        if prev_hash != prev:
            return _bad(
                expected - 1, prev, seq,
                f"entry {seq} does not follow entry {seq - 1} (removed or reordered)",
            )
        if _sha256((prev + entry).encode()).hexdigest() != h:
            return _bad(expected - 1, prev, seq, f"entry {seq} was edited (hash mismatch)")
        # Canonical JSON sorts keys, so the indexed columns are the entry's fixed head and
        # tail around `data`: comparing text is exact and much cheaper than parsing it.
        if not (
            entry.startswith(f'{{"actor":{_str(actor)},"at":{float(at)!r},"data":')
            and entry.endswith(
                f',"digest":{_opt(digest)},"event":{_str(event)},'
                f'"request_id":{_opt(request_id)},"seq":{seq}}}'
            )
        ):
            return _bad(
                expected - 1, prev, seq,
                f"entry {seq} was edited (its columns differ from the hashed entry)",
            )
        if not found and h == anchor:
            found = True
        prev = h
        expected += 1
        step += 1
        if progress is not None and step == 10_000:
            progress(step)
            step = 0
    if progress is not None and step:
        progress(step)
    checked = expected - 1
    if head is not None and (head[0] != checked or head[1] != prev):
        return _bad(
            checked, prev, checked + 1,
            f"the chain head records {head[0]} entries but the trail ends at entry {checked}"
            " (newest entries removed)",
        )
    if not found:
        return _bad(
            checked, prev, checked + 1,
            "the anchor is not on the chain (newest entries removed or the chain rewritten)",
        )
    return VerifyReport(ok=True, checked=checked, head_hash=prev)


def _opt(value: str | None) -> str:
    return "null" if value is None else _str(value)


def _bad(checked: int, head: str, seq: int, problem: str) -> VerifyReport:
    return VerifyReport(ok=False, checked=checked, head_hash=head, bad_seq=seq, problem=problem)
