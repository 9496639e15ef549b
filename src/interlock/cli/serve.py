"""`interlock serve`: the HTTP API and the reviewer UI under uvicorn, with SPEC §6's defaults.

On PostgreSQL every running server records its policy hash in the database, and a server
whose policy differs from the others' refuses to start. A policy change applied through
interlock is followed by every server (`server.policy_follow`); each heartbeat records the
hash the server decides with now.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import sys
import threading
from importlib import resources
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import sqlalchemy as sa
import typer

from interlock.cli.db import DEFAULT_DB
from interlock.errors import BadInput, InterlockError
from interlock.gateway import Gateway
from interlock.policy import Policy, load_policy
from interlock.server.settings import ServerSettings
from interlock.store import Store, open_store

DEFAULT_POLICY = "interlock.yaml"
#: Seconds between a server's heartbeats in `interlock_servers`; twice that and it is gone.
HEARTBEAT = 10.0
#: Seconds an idle keep-alive connection stays open. uvicorn's 5 s equals httpx's pool
#: expiry, so a client reusing a connection it thinks is 4.9 s idle meets this server's close
#: and its request is dropped unanswered. The client's pool (httpx 5 s, aiohttp 15 s) or a
#: load balancer in front (often 60 s) must always be the side that closes an idle connection.
KEEP_ALIVE = 65


class PolicyMismatch(InterlockError):
    """Another server on the same database runs another policy."""

    code = "policy_mismatch"


def starter_policy(path: Path) -> bool:
    """Write the commented starter policy at `path` unless a file is there; True if written."""
    if path.exists():
        return False
    with resources.as_file(resources.files("interlock.policy") / "starter.yaml") as src:
        shutil.copyfile(src, path)
    return True


_SERVERS = sa.Table(
    "interlock_servers", sa.MetaData(),
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("policy_hash", sa.String(64), nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("seen_at", sa.Float, nullable=False),
)


class Registration:
    """This server's row in `interlock_servers` (PostgreSQL only), kept fresh by a thread."""

    def __init__(self, store: Store, policy_hash: str) -> None:
        self.store = store
        self.policy_hash = policy_hash
        self.id = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def claim(self) -> None:
        """Refuse to start when a live server runs another policy; else register."""
        engine = self.store.engine
        now = self.store.clock.now()
        with engine.begin() as conn:
            _SERVERS.create(conn, checkfirst=True)
        with engine.begin() as conn:
            # One starter at a time, so two servers with different policies cannot both pass.
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(7428310)"))
            conn.execute(_SERVERS.delete().where(_SERVERS.c.seen_at < now - 3 * HEARTBEAT))
            others = conn.execute(sa.select(_SERVERS.c.policy_hash, _SERVERS.c.host).where(
                _SERVERS.c.policy_hash != self.policy_hash)).first()
            if others is not None:
                raise PolicyMismatch(
                    f"another server on this database ({others.host}) runs policy "
                    f"{others.policy_hash[:12]}, this one {self.policy_hash[:12]}: "
                    "deploy the same policy file to every server"
                )
            conn.execute(_SERVERS.insert().values(id=self.id, policy_hash=self.policy_hash,
                                                  host=socket.gethostname(), seen_at=now))
        self._thread = threading.Thread(target=self._beat, daemon=True,
                                        name="interlock-heartbeat")
        self._thread.start()

    def serving(self, policy: Policy) -> None:
        """This server decides with another policy now (an applied change)."""
        self.policy_hash = policy.hash

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT):
            try:
                with self.store.engine.begin() as conn:
                    conn.execute(_SERVERS.update().where(_SERVERS.c.id == self.id)
                                 .values(seen_at=self.store.clock.now(),
                                         policy_hash=self.policy_hash))
            except sa.exc.SQLAlchemyError:
                continue

    def release(self) -> None:
        self._stop.set()
        try:
            with self.store.engine.begin() as conn:
                conn.execute(_SERVERS.delete().where(_SERVERS.c.id == self.id))
        except sa.exc.SQLAlchemyError:
            pass


def _first_admin(store: Store) -> str | None:
    """A new admin token's secret when no live admin token exists yet, else None."""
    if any(t.kind == "admin" and t.revoked_at is None for t in store.tokens()):
        return None
    _, secret = store.create_token(kind="admin", name="admin", actor="system")
    return secret


def _raise_fd_limit() -> None:
    """Lift the soft open-files limit to the hard one: each waiting agent holds a socket, and
    a common soft limit of 1024 would stop accepting connections near 1,000 waiters."""
    try:
        import resource
    except ImportError:  # not on this platform
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = 65536 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):  # refused: keep the soft limit
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for name in ("interlock.access", "interlock.server"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def public_base(url: str | None) -> str | None:
    """`--public-url` checked: an absolute http(s) URL, without a trailing slash."""
    if url is None:
        return None
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query \
            or parts.fragment:
        raise BadInput(f"--public-url takes an absolute http(s) URL such as "
                       f"https://interlock.example.com, not `{url}`")
    return url.strip().rstrip("/")


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: any free one), or BadInput saying why
    not (the port is taken, the address is not this host's, the name does not resolve)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except (OSError, OverflowError, UnicodeError) as exc:
        raise BadInput(f"cannot listen on {host}:{port}: {exc}") from None
    family, kind, proto, _name, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except (OSError, OverflowError) as exc:
        sock.close()
        reason = getattr(exc, "strerror", None) or str(exc)
        raise BadInput(f"cannot listen on {host}:{port}: {reason}; pick another --port "
                       "or --host") from None
    sock.set_inheritable(True)
    return sock


def serve(
    policy: Annotated[str | None, typer.Option(
        "--policy", help=f"Policy file (default ./{DEFAULT_POLICY}, written if absent).")] = None,
    db: Annotated[str, typer.Option(
        "--db", help="Database URL: sqlite:///FILE or postgresql://...")] = DEFAULT_DB,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(
        "--port", min=0, max=65535, help="Port to listen on (0: any free port).")] = 8765,
    public_url: Annotated[str | None, typer.Option(
        "--public-url", help="Base URL of links sent to people.")] = None,
) -> None:
    """Run the HTTP API and the reviewer web UI."""
    import uvicorn

    from interlock.server.app import create_app
    from interlock.server.policy_follow import PolicyFollower

    public_url = public_base(public_url)
    if policy is None:
        path = Path(DEFAULT_POLICY)
        if starter_policy(path):
            typer.echo(f"wrote a starter policy to ./{DEFAULT_POLICY}: edit it to fit", err=True)
    else:
        path = Path(policy)
    loaded = load_policy(path)
    # Bound first: a port in use or an address this host lacks is one line, before the
    # database is created or a sign-in link printed for a server that never ran.
    sock = listen(host, port)
    port = sock.getsockname()[1]
    try:
        store = open_store(db)
    except BaseException:
        sock.close()
        raise
    registration: Registration | None = None
    follower: PolicyFollower | None = None
    if store.engine.dialect.name == "postgresql":
        registration = Registration(store, loaded.hash)
        registration.claim()
    try:
        store.record("system", "policy.loaded", {"hash": loaded.hash, "file": str(path)})
        url = (public_url or f"http://{host}:{port}").rstrip("/")
        settings = ServerSettings(public_url=public_url or "",
                                  secure_cookies=url.startswith("https://"))
        gateway = Gateway(loaded, store, public_url=public_url)
        app = create_app(gateway, settings)
        follower = PolicyFollower(app.state.gateway, on_change=registration.serving
                                  if registration is not None else None)
        follower.start()
        typer.echo(f"interlock {loaded.hash[:12]} serving the API and the reviewer UI at "
                   f"{url}/")
        secret = _first_admin(store)
        if secret is not None:
            typer.echo("first start: sign in as admin once with this link (keep it private):")
            typer.echo(f"  {url}/login?token={secret}")
        sys.stdout.flush()
        _logging()
        _raise_fd_limit()
        config = uvicorn.Config(app, access_log=False, log_level="warning", lifespan="on",
                                timeout_keep_alive=KEEP_ALIVE)
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
        if follower is not None:
            follower.stop()
        if registration is not None:
            registration.release()
        store.close()
