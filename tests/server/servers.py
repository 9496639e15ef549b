"""Real `interlock serve` processes for the socket suites: free ports, temp dirs, clean exits.

PostgreSQL comes from INTERLOCK_TEST_PG (as in the store suite); each use gets a fresh schema.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

#: How the tests start the CLI (the installed console script may be absent).
INTERLOCK = [sys.executable, "-c", "from interlock.cli import entrypoint; entrypoint()"]
PG_URL = os.environ.get("INTERLOCK_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `interlock ARGS` and return its output."""
    done = subprocess.run([*INTERLOCK, *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60)
    if check and done.returncode != 0:
        raise AssertionError(f"interlock {' '.join(args)} exited {done.returncode}: "
                             f"{done.stderr}")
    return done


class Server:
    """One `interlock serve` process."""

    def __init__(self, cwd: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.out = cwd / f"serve-{self.port}.out"
        self.err = cwd / f"serve-{self.port}.err"
        with self.out.open("w") as out, self.err.open("w") as err:
            self.proc = subprocess.Popen(
                [*INTERLOCK, "serve", "--port", str(self.port),
                 *args], cwd=cwd, stdout=out, stderr=err)

    def ready(self, timeout: float = 30.0) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited {self.proc.returncode}: "
                                     f"{self.err.read_text()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("serve did not come up: " + self.err.read_text())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextmanager
def serving(cwd: Path, *args: str) -> Iterator[Server]:
    server = Server(cwd, *args)
    try:
        yield server.ready()
    finally:
        server.stop()


def _pg_engine(url: str) -> sa.Engine:
    return sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))


def pg_base() -> str:
    """A PostgreSQL URL that connects (trying `root` when `postgres` is refused), or fail."""
    candidates = [PG_URL]
    if "postgres@" in PG_URL:
        candidates.append(PG_URL.replace("postgres@", "root@", 1))
    errors = []
    for url in candidates:
        engine = _pg_engine(url)
        try:
            with engine.connect():
                return url
        except sa.exc.OperationalError as exc:
            errors.append(f"{url}: {str(exc.orig).strip()}")
        finally:
            engine.dispose()
    pytest.fail("PostgreSQL is unreachable (set INTERLOCK_TEST_PG). Tried: "
                + "; ".join(errors), pytrace=False)


def pg_terminate(application_name: str) -> int:
    """End every PostgreSQL connection with this `application_name` from the server's side,
    as a restart or a failover does; returns how many there were."""
    engine = _pg_engine(pg_base())
    try:
        with engine.begin() as conn:
            return len(conn.execute(sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = :name"), {"name": application_name}).all())
    finally:
        engine.dispose()


@contextmanager
def pg_schema() -> Iterator[str]:
    """A `--db` URL on a fresh schema, dropped afterwards."""
    base = pg_base()
    schema = f"il_srv_{uuid.uuid4().hex[:10]}"
    engine = _pg_engine(base)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        engine.dispose()
