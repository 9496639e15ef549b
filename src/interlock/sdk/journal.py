"""What the SDK keeps on local disk: fail-open runs awaiting audit, and remote ticket ids.

Lines are versioned JSON, appended and fsynced; rewrites go through a temp file and rename.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from interlock.errors import Conflict, Gone
from interlock.sdk.client import Client, Status

FORMAT = 1


@dataclass(kw_only=True)
class FailOpenRun:
    """One action that ran while the gateway was unreachable."""

    key: str
    """Its idempotency key: the request it becomes when the gateway is back."""
    body: dict[str, Any]
    """The action as it would have been submitted."""
    ran_at: float
    """When it started."""
    status: Status | None = None
    """How it went; None if the process died before it said."""
    summary: str | None = None
    """The outcome's summary."""

    def note(self) -> str:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.ran_at))
        how = self.status or "no outcome recorded"
        extra = f": {self.summary}" if self.summary else ""
        return f"ran fail-open at {when} while the gateway was unreachable ({how}{extra})"


class _Lines:
    """An append-only file of JSON lines, shared by processes through an flock."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps({"format": FORMAT, **record}, sort_keys=True) + "\n"
        with self.locked():
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode())
                os.fsync(fd)
            finally:
                os.close(fd)

    def read(self) -> list[dict[str, Any]]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by a crash mid-write
            if isinstance(record, dict) and record.get("format") == FORMAT:
                out.append(record)
        return out

    def rewrite(self, records: list[dict[str, Any]]) -> None:
        """Replace the contents (caller holds the lock)."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


class Journal:
    """Fail-open runs, written before they run, submitted when the gateway is back."""

    def __init__(self, path: Path) -> None:
        self.file = _Lines(path)

    @property
    def path(self) -> Path:
        return self.file.path

    def started(self, key: str, body: dict[str, Any]) -> None:
        self.file.append({"kind": "started", "key": key, "body": body, "at": time.time()})

    def finished(self, key: str, status: Status, summary: str | None) -> None:
        self.file.append({"kind": "finished", "key": key, "status": status, "summary": summary})

    def runs(self) -> list[FailOpenRun]:
        """Every run not yet audited, oldest first."""
        return _merge(self.file.read())

    def flush(self, client: Client) -> int:
        """Submit every journaled run; returns how many reached the gateway's audit trail."""
        done = 0
        with self.file.locked():
            records = self.file.read()
            runs = _merge(records)
            flushed: set[str] = set()
            try:
                for run in runs:
                    _audit(client, run)
                    flushed.add(run.key)
                    done += 1
            finally:
                if flushed:
                    self.file.rewrite([r for r in records if r.get("key") not in flushed])
        return done


def _merge(records: list[dict[str, Any]]) -> list[FailOpenRun]:
    runs: dict[str, FailOpenRun] = {}
    for r in records:
        key = str(r.get("key"))
        if r.get("kind") == "started" and isinstance(r.get("body"), dict):
            runs[key] = FailOpenRun(key=key, body=r["body"], ran_at=float(r.get("at", 0)))
        elif r.get("kind") == "finished" and key in runs:
            runs[key].status = r.get("status")
            runs[key].summary = r.get("summary")
    return list(runs.values())


def _audit(client: Client, run: FailOpenRun) -> None:
    """The run becomes a request like any other: submitted with its own key, then closed."""
    snap = client.submit(run.body)  # StoreUnavailable stops the flush: still unreachable
    if snap.state in ("allowed", "notified", "approved"):
        try:
            client.claim(snap.id)
        except (Conflict, Gone):
            return
        if run.status is not None:
            client.outcome(snap.id, run.status, run.note())
        # With no outcome the claim's lease runs out and a person resolves it (`unknown`).
    elif snap.state == "pending":
        with contextlib.suppress(Conflict, Gone):
            client.cancel(snap.id, run.note())


class Tickets:
    """Ticket ids a remote Gate submitted, so `pending()` works in a later process."""

    def __init__(self, path: Path) -> None:
        self.file = _Lines(path)

    def add(self, request_id: str) -> None:
        self.file.append({"kind": "ticket", "id": request_id})

    def ids(self) -> list[str]:
        return list(dict.fromkeys(str(r["id"]) for r in self.file.read() if "id" in r))

    def forget(self, ids: set[str]) -> None:
        if not ids:
            return
        with self.file.locked():
            self.file.rewrite([r for r in self.file.read() if r.get("id") not in ids])

