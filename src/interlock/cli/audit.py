"""`interlock audit verify|anchor|export`: check, pin and stream the hash-chained audit trail.

verify exits 1 naming the first bad entry; anchor prints the head hash to keep elsewhere.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated

import typer

from interlock.cli.db import DEFAULT_DB, DbOption
from interlock.errors import InterlockError
from interlock.store import Store, open_store

app = typer.Typer(help="Verify, anchor and export the audit trail.", no_args_is_help=True,
                  rich_markup_mode=None)


class AuditBroken(InterlockError):
    """`audit verify` found an entry that does not check."""

    code = "audit_broken"


class ExportFormat(StrEnum):
    """Formats `audit export` writes."""

    JSONL = "jsonl"


def _open(db: str) -> Store:
    return open_store(db, create=False)


@app.command()
def verify(
    db: DbOption = DEFAULT_DB,
    anchor: Annotated[
        str | None,
        typer.Option("--anchor", help="A head hash printed earlier by `audit anchor`."),
    ] = None,
) -> None:
    """Walk the chain; exit 1 naming the first edited, removed or reordered entry."""
    store = _open(db)
    try:
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import Progress

            total = store.audit_head()[0]
            with Progress(console=Console(stderr=True), transient=True) as bar:
                task = bar.add_task("verifying", total=total)
                report = store.verify(anchor=anchor,
                                      progress=lambda n: bar.advance(task, n))
        else:
            report = store.verify(anchor=anchor)
    finally:
        store.close()
    if not report.ok:
        raise AuditBroken(f"audit trail broken at entry {report.bad_seq}: {report.problem}")
    typer.echo(f"ok: {report.checked} entries, head {report.head_hash}")


@app.command()
def anchor(db: DbOption = DEFAULT_DB) -> None:
    """Print the head hash; keep it elsewhere and pass it to `verify --anchor`."""
    store = _open(db)
    try:
        typer.echo(store.audit_head()[1])
    finally:
        store.close()


@app.command()
def export(
    db: DbOption = DEFAULT_DB,
    fmt: Annotated[ExportFormat, typer.Option("--format", help="Output format.")] = (
        ExportFormat.JSONL
    ),
) -> None:
    """Stream every entry as one JSON line: the hashed entry, prev_hash and hash."""
    store = _open(db)
    try:
        out = sys.stdout
        for line in store.export_jsonl():
            out.write(line + "\n")
        out.flush()
    finally:
        store.close()
