"""The audit chain: canonical JSON, how an entry is hashed onto the chain, and how it is verified.

Verification reads the trail in seq-range pages, hashes the stored entry text itself and
cross-checks the indexed columns against it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring
from typing import Any, Protocol

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


def bodies(pending: Sequence[Pending]) -> list[str]:
    """Each entry's canonical JSON up to `"seq":` (its last key), for chaining in the
    database: appending the seq and `}` gives exactly what `chain` would write."""
    out = []
    for p in pending:
        text = canonical(
            {
                "seq": 0,
                "at": float(p.at),
                "actor": p.actor,
                "event": p.event,
                "request_id": p.request_id,
                "digest": p.digest,
                "data": p.data,
            }
        )
        assert text.endswith('"seq":0}')
        out.append(text[:-2])
    return out


#: What separates entries, and an entry's fields, in `packed`: control characters, which
#: canonical JSON always escapes, and no event name or request id holds.
ENTRY_SEP = "\x1e"
FIELD_SEP = "\x1f"


def packed(pending: Sequence[Pending]) -> str:
    """The entries as one text for PostgreSQL's `interlock_append_packed`: per entry its
    event, its request id (empty for none) and its body (`bodies`), fields separated by
    FIELD_SEP, entries by ENTRY_SEP. One text parameter costs the driver a fraction of
    what three arrays do."""
    parts = []
    for p, body in zip(pending, bodies(pending), strict=True):
        rid = p.request_id or ""
        if any(sep in p.event or sep in rid for sep in (ENTRY_SEP, FIELD_SEP)):
            raise ValueError(f"an audit event or request id holds a separator: {p.event!r} "
                             f"{rid!r}")
        parts.append(f"{p.event}{FIELD_SEP}{rid}{FIELD_SEP}{body}")
    return ENTRY_SEP.join(parts)


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
                "event": p.event,
                "request_id": p.request_id,
                "entry": entry,
                "prev_hash": prev,
                "hash": h,
            }
        )
        prev = h
    return rows


def to_entry(row: Sequence[Any]) -> AuditEntry:
    """An AuditEntry from a row in `ENTRY_COLUMNS` order."""
    body = _loads(row[1])
    return AuditEntry(
        seq=int(row[0]),
        at=float(body["at"]),
        actor=body["actor"],
        event=body["event"],
        request_id=body["request_id"],
        digest=body["digest"],
        data=body.get("data", {}),
        prev_hash=row[2],
        hash=row[3],
    )


#: Columns of a full entry row, in the order `to_entry` reads them.
ENTRY_COLUMNS = "seq, entry, prev_hash, hash"

#: Columns `verify` walks: prev_hash is not needed, the walk carries the previous hash.
VERIFY_COLUMNS = "seq, event, request_id, entry, hash"

#: Entries per page `pages` reads. Where PostgreSQL has no statistics on the table yet, a
#: page is sorted rather than read off the index; this many entries of the usual size
#: still sort within the default work_mem.
PAGE = 5_000


class Cursor(Protocol):
    """The little of a DB-API cursor (sqlite3, psycopg) that `pages` uses."""

    def execute(self, sql: str, /) -> object: ...

    def fetchall(self) -> Sequence[Any]: ...


def pages(
    cursor: Cursor, *, upto: int, after: int = 0, columns: str = VERIFY_COLUMNS,
    size: int = PAGE,
) -> Iterator[list[Any]]:
    """The entries after seq `after` up to seq `upto`, in seq order, one page of rows at a time.

    A page is a range of seq, not `seq > last LIMIT n`: on a table PostgreSQL has no
    statistics for, each LIMIT page was planned as a sort of every entry left, which made
    the walk quadratic; a range bounds each page's cost whatever the plan. Removed entries
    leave a short page or an empty one; an empty page skips straight to the next entry that
    exists, so the walk still sees (and names) the gap, and a head row claiming too many
    entries costs one more query, not one per page.
    """
    low = int(after)
    upto = int(upto)
    while low < upto:
        high = min(low + size, upto)
        cursor.execute(
            f"SELECT {columns} FROM audit WHERE seq > {low} AND seq <= {high} ORDER BY seq"
        )
        rows = list(cursor.fetchall())
        if rows:
            yield rows
            low = high
            continue
        cursor.execute(f"SELECT min(seq) FROM audit WHERE seq > {high} AND seq <= {upto}")
        (following,) = cursor.fetchall()[0]
        if following is None:
            return
        low = int(following) - 1


def verify(
    rows: Iterable[Sequence[Any]],
    *,
    head: tuple[int, str] | None,
    anchor: str | None = None,
    progress: Callable[[int], None] | None = None,
    stored_prev: Callable[[int], str | None] | None = None,
) -> VerifyReport:
    """Walk rows (`VERIFY_COLUMNS`) in seq order; report the first entry edited, removed or
    reordered.

    `head` is the chain-head row (seq, hash) the writers maintain; `anchor` a hash printed
    earlier by `audit anchor`, which must still be on the chain; `stored_prev` reads one
    entry's stored prev_hash, to tell an edit from a removal when a hash does not match.
    """
    expected = 1
    prev = GENESIS
    found = anchor is None or anchor == GENESIS
    step = 0
    sha256 = _sha256
    tails: dict[tuple[str, str | None], str] = {}  # events repeat, and a request's entries cluster
    for seq, event, request_id, entry, h in rows:
        if seq != expected:
            where = expected if seq > expected else seq
            what = "is missing" if seq > expected else "is out of order"
            return _bad(expected - 1, prev, where, f"entry {where} {what}")
        if sha256((prev + entry).encode()).hexdigest() != h:
            if stored_prev is not None and stored_prev(seq) != prev:
                problem = f"entry {seq} does not follow entry {seq - 1} (removed or reordered)"
            else:
                problem = f"entry {seq} was edited (hash mismatch)"
            return _bad(expected - 1, prev, seq, problem)
        # Canonical JSON sorts keys, so `event`, `request_id` and `seq` are the entry's fixed
        # tail: comparing that text is exact and much cheaper than parsing the entry.
        tail = tails.get((event, request_id))
        if tail is None:
            if len(tails) > 4096:
                tails.clear()
            tail = tails[(event, request_id)] = (
                f',"event":{_str(event)},"request_id":{_opt(request_id)},"seq":'
            )
        if not entry.endswith(f"{tail}{seq}}}"):
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
