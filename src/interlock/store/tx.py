"""A write transaction's working parts: statements compiled once per dialect and run on the
driver's cursor (`Statements`), and the transaction they run in (`Tx`), which queues its audit
entries for the chain and, where the driver pipelines, its updates for one round trip.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from interlock.store import audit as chain

#: A row as the store reads it: column name -> value.
Row = dict[str, Any]


def _named(dialect: sa.Dialect) -> sa.Dialect:
    """SQLite's dialect with named parameters (its driver takes both styles); others as is."""
    if dialect.name != "sqlite" or not dialect.positional:
        return dialect
    named = copy.copy(dialect)  # keeps what the dialect learnt of the server on connect
    named.paramstyle = "named"
    named.positional = False
    return named


class Statements:
    """Core statements compiled once per dialect and run on the driver's cursor.

    The hot paths (load, compare-and-set, audit append) run several statements per request
    change; skipping SQLAlchemy's per-call execution machinery there halves their CPU cost.
    """

    def __init__(self, dialect: sa.Dialect) -> None:
        # Named parameters where the driver takes them (SQLite's does too): a call's dict goes
        # to the driver as it is, instead of being copied into a tuple in statement order.
        self.dialect = _named(dialect)
        self._cache: dict[tuple[Any, tuple[str, ...]], tuple[str, tuple[str, ...] | None,
                                                              dict[str, Any]]] = {}
        self._checked: dict[tuple[Any, ...], tuple[str, tuple[str, ...] | None,
                                                   dict[str, Any]]] = {}
        self._combined: dict[tuple[Any, ...], _Combined | None] = {}
        self.names: dict[Any, tuple[str, ...]] = {}
        """A query's column names, by statement."""

    def get(
        self, stmt: Any, keys: tuple[str, ...]
    ) -> tuple[str, tuple[str, ...] | None, dict[str, Any]]:
        """(SQL text, positional parameter names or None, default parameter values)."""
        hit = self._cache.get((stmt, keys))
        if hit is None and isinstance(stmt, str):  # the driver's own SQL, as it is
            hit = self._cache[(stmt, keys)] = (stmt, None, {})
        if hit is None:
            compiled = stmt.compile(dialect=self.dialect, column_keys=list(keys))
            order = tuple(compiled.positiontup) if self.dialect.positional else None
            # literal values in the statement (e.g. `id == 1`) travel as binds too; the
            # caller's own keys always override, so they need no default
            base = {name: bind.value for name, bind in compiled.binds.items()
                    if name not in keys}
            hit = (compiled.string, order, base)
            self._cache[(stmt, keys)] = hit
        return hit

    def checked(
        self, stmt: Any, keys: tuple[str, ...]
    ) -> tuple[str, tuple[str, ...] | None, dict[str, Any]]:
        """An UPDATE that fails (division by zero) unless it changed exactly one row: a
        compare-and-set whose miss must abort the transaction before a queued COMMIT."""
        hit = self._checked.get((stmt, keys))
        if hit is None:
            sql, order, base = self.get(stmt.returning(sa.literal_column("1")), keys)
            hit = (f"WITH cas AS ({sql}) SELECT 1 / count(*) FROM cas", order, base)
            self._checked[(stmt, keys)] = hit
        return hit

    def checked_then(
        self, stmt: Any, keys: tuple[str, ...], then: str
    ) -> tuple[str, tuple[str, ...] | None, dict[str, Any]]:
        """`checked`, and the expression `then` evaluated in the same statement, once: a
        compare-and-set (or an insert) and what must happen only if it held, in one
        statement. `then` may run before the check fails; the failure rolls both back all
        the same."""
        hit = self._checked.get((stmt, keys, then))
        if hit is None:
            sql, order, base = self.get(stmt.returning(sa.literal_column("1")), keys)
            hit = (f"WITH cas AS ({sql}) SELECT 1 / count(*), {then} FROM cas", order, base)
            self._checked[(stmt, keys, then)] = hit
        return hit

    def combined(
        self, firsts: tuple[tuple[Any, tuple[str, ...]], ...], last: Any,
        keys: tuple[str, ...], then: str,
    ) -> _Combined | None:
        """`checked_then` of `last`, with the writes `firsts` (inserts nothing reads back)
        run before it in the same statement as data-modifying WITH queries, which PostgreSQL
        runs once each, to completion, whether or not the query reads them. Each first's
        parameters are renamed with a prefix of its own; returns (SQL, [(prefix, default
        values)] in the order of `firsts`), or None where a statement cannot be renamed."""
        key = (firsts, last, keys, then)
        if key in self._combined:
            return self._combined[key]
        sql, _order, _base = self.checked_then(last, keys, then)
        ctes, prefixes = [], []
        for i, (stmt, first_keys) in enumerate(firsts):
            text, order, base = self.get(stmt, first_keys)
            if order is not None or "%%" in text:
                self._combined[key] = None
                return None
            prefix = f"w{i}_"
            renamed = _PLACEHOLDER.sub(rf"%({prefix}\1)\2", text)
            ctes.append(f"w{i} AS ({renamed})")
            prefixes.append((prefix, base))
        found = (f"WITH {', '.join(ctes)}, {sql.removeprefix('WITH ')}", prefixes)
        self._combined[key] = found
        return found


#: A combined statement: its SQL, and each first write's parameter prefix and defaults.
_Combined = tuple[str, list[tuple[str, dict[str, Any]]]]
#: A named parameter in compiled psycopg SQL: `%(name)s`, or `%(name)b` for binary.
_PLACEHOLDER = re.compile(r"%\((\w+)\)([sb])")


@dataclass(kw_only=True)
class Tx:
    """One write transaction: its connection, its time, and what it will audit."""

    link: sa.Connection | None
    """SQLAlchemy's connection, inside BEGIN (IMMEDIATE on SQLite); None where the write is
    pipelined on a driver connection of the store's own (`cursor` is then set)."""
    now: float
    """The clock's time for everything this transaction writes."""
    statements: Statements
    """The store's compiled statements."""
    cursor: Any = None
    """The driver's cursor, opened on first use."""
    pipeline: bool = False
    """Whether updates may be deferred to one pipelined round trip before commit."""
    deferred: list[tuple[Any, dict[str, Any], Exception | None]] = field(default_factory=list)
    """Deferred updates, with the error to raise if one does not change exactly one row."""
    entries: list[chain.Pending] = field(default_factory=list)
    """Audit entries, chained at commit."""
    inserts: list[tuple[Any, dict[str, Any]]] = field(default_factory=list)
    """Deferred inserts, sent before the compare-and-sets (pipelined writes only)."""
    rows: dict[str, Row] = field(default_factory=dict)
    """Requests this transaction changed or created, by id, as it leaves them."""

    @property
    def conn(self) -> sa.Connection:
        """SQLAlchemy's connection, for writes that are not pipelined."""
        if self.link is None:
            raise RuntimeError("a pipelined write has only the driver's cursor")
        return self.link

    def audit(
        self,
        actor: str,
        event: str,
        data: dict[str, Any],
        *,
        request_id: str | None = None,
        digest: str | None = None,
    ) -> None:
        """Queue an audit entry; it commits with the transaction or not at all."""
        self.entries.append(
            chain.Pending(
                at=self.now, actor=actor, event=event, request_id=request_id,
                digest=digest, data=data,
            )
        )

    def run(
        self, stmt: Any, params: dict[str, Any] | list[dict[str, Any]], *, cursor: Any = None
    ) -> Any:
        """Execute a Core statement (one parameter set, or many) on the driver's cursor."""
        first = params[0] if isinstance(params, list) else params
        sql, order, base = self.statements.get(stmt, tuple(first))
        if cursor is None:
            if self.cursor is None:
                self.cursor = self.conn.connection.cursor()
            cursor = self.cursor
        if not isinstance(params, list):
            one = {**base, **params} if base else params
            cursor.execute(sql, one if order is None else tuple(one[name] for name in order))
            return cursor
        sets = [{**base, **p} for p in params] if base else params
        cursor.executemany(sql, sets if order is None else [
            tuple(a[name] for name in order) for a in sets  # qmark drivers
        ])
        return cursor

    def later(self, stmt: Any, params: dict[str, Any], miss: Exception | None) -> None:
        """An update whose result is needed only before commit: `miss` is raised unless it
        changed exactly one row. Where the driver pipelines, it is sent with the commit's
        other writes; elsewhere it runs now."""
        if self.pipeline:
            self.deferred.append((stmt, params, miss))
        elif self.run(stmt, params).rowcount != 1 and miss is not None:
            raise miss

    def insert(self, stmt: Any, params: dict[str, Any]) -> None:
        """An insert nothing in the transaction reads back: where the driver pipelines, it is
        sent with the commit's other writes (and may carry the audit append); elsewhere it
        runs now."""
        if self.pipeline:
            self.inserts.append((stmt, params))
        else:
            self.run(stmt, params)

    def fetch_row(self, stmt: Any, params: dict[str, Any]) -> Row | None:
        """The first row of a query as a dict, or None."""
        cur = self.run(stmt, params)
        row = cur.fetchone()
        if row is None:
            return None
        names = self._names(stmt, cur)
        cur.fetchall()
        return dict(zip(names, row, strict=True))

    def fetch_rows(self, stmt: Any, params: dict[str, Any]) -> list[Row]:
        """Every row of a query, as dicts."""
        cur = self.run(stmt, params)
        rows = cur.fetchall()
        if not rows:
            return []
        names = self._names(stmt, cur)
        return [dict(zip(names, row, strict=True)) for row in rows]

    def _names(self, stmt: Any, cur: Any) -> tuple[str, ...]:
        # A statement's columns never change; psycopg builds a Column object per column for
        # each `description`, so it is read once per statement.
        names = self.statements.names.get(stmt)
        if names is None:
            names = self.statements.names[stmt] = tuple(d[0] for d in cur.description)
        return names
