"""The rest of what the store keeps: votes read back, annotations, agents, tokens, pauses.

`Store` is the full contract the gateway, server and CLI call; every write here is audited.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from interlock.clock import Clock
from interlock.errors import BadInput, Conflict, NotFound
from interlock.policy.records import Facts, Level
from interlock.store import autonomy as levels
from interlock.store import grants
from interlock.store import schema as t
from interlock.store.backends import backend_for_url
from interlock.store.core import dumps, new_id
from interlock.store.grants import Grant
from interlock.store.records import (
    FINAL,
    Agent,
    Annotation,
    Pause,
    Rating,
    Reviewer,
    ReviewVerdict,
    State,
    Token,
    TokenKind,
    Vote,
)
from interlock.store.sweeper import SweepingStore


def hash_secret(secret: str) -> str:
    """What is stored of a token: the sha256 of its secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


class Store(SweepingStore):
    """Durable requests, votes, audit trail, agents, tokens and annotations.

    The outbox's rows are the notification dispatcher's (`interlock.notify.deliveries`)."""

    # -- votes and annotations --------------------------------------------------------

    def votes(self, request_id: str) -> list[Vote]:
        """Every vote on a request, oldest first."""
        v = t.votes.c
        with self._read() as conn:
            rows = conn.execute(
                sa.select(t.votes).where(v.request_id == request_id).order_by(v.id)
            ).mappings()
            return [
                Vote(
                    request_id=r["request_id"], reviewer=r["reviewer"], verdict=r["verdict"],
                    note=r["note"], args=None if r["args"] is None else json.loads(r["args"]),
                    counted=tuple(json.loads(r["counted"])), confirmed=bool(r["confirmed"]),
                    round=r["round"], at=r["at"],
                )
                for r in rows
            ]

    def review(
        self, request_id: str, *, reviewer: Reviewer, verdict: ReviewVerdict,
        note: str | None = None,
    ) -> Annotation:
        """Post-execution review (ok / flagged / reversed) of a finished request."""
        if verdict not in ("ok", "flagged", "reversed"):
            raise BadInput(f"a review is ok, flagged or reversed, not `{verdict}`")
        return self._annotate(request_id, "review", reviewer, verdict, note, None)

    def rate(
        self, request_id: str, *, reviewer: Reviewer, rating: Rating, correction: Any = None,
        note: str | None = None,
    ) -> Annotation:
        """Feedback rating (correct / partially_correct / incorrect) of a finished request."""
        if rating not in ("correct", "partially_correct", "incorrect"):
            raise BadInput(f"a rating is correct, partially_correct or incorrect, not `{rating}`")
        return self._annotate(request_id, "rating", reviewer, rating, note, correction)

    def _annotate(
        self, request_id: str, kind: str, reviewer: Reviewer, value: str, note: str | None,
        correction: Any,
    ) -> Annotation:
        with self._write() as tx:
            row = self._load(tx, request_id, lock=False)
            if State(row["state"]) not in FINAL:
                raise Conflict(f"request `{request_id}` is {row['state']}: only a finished "
                               "request can be annotated", code="not_finished")
            tx.conn.execute(t.feedback.insert().values(
                request_id=request_id, kind=kind, reviewer=reviewer.name, value=value,
                note=note, correction=None if correction is None else dumps(correction),
                at=tx.now,
            ))
            tx.audit(f"reviewer:{reviewer.name}", f"{kind}.{value}",
                     {"note": note, "correction": correction},
                     request_id=request_id, digest=row["digest"])
            if kind == "review" and value == "reversed":
                self._count(tx, row["agent"], reversals=1)
                levels.step(tx, self.autonomy, row["agent"], "reversed",
                              request_id=request_id)
            elif kind == "rating" and value == "incorrect" and not row["edited"] and (
                row["decision"] == "require_approval"
            ):
                levels.step(tx, self.autonomy, row["agent"], "incorrect",
                              request_id=request_id)
            return Annotation(request_id=request_id, kind=kind,  # type: ignore[arg-type]
                              reviewer=reviewer.name, value=value, note=note,
                              correction=correction, at=tx.now)

    def annotations(self, request_id: str) -> list[Annotation]:
        """Reviews and ratings of a request, oldest first."""
        a = t.feedback.c
        with self._read() as conn:
            return [
                Annotation(request_id=r["request_id"], kind=r["kind"], reviewer=r["reviewer"],
                           value=r["value"], note=r["note"],
                           correction=None if r["correction"] is None
                           else json.loads(r["correction"]), at=r["at"])
                for r in conn.execute(
                    sa.select(t.feedback).where(a.request_id == request_id).order_by(a.id)
                ).mappings()
            ]

    # -- facts for the policy ------------------------------------------------------------

    def facts(
        self, *, agent: str, action: str, environment: str | None, run_id: str | None,
        recipients: Sequence[str] = (),
    ) -> Facts:
        """What history says about an action, each fact one indexed lookup."""
        r = t.requests.c
        with self._read() as conn:
            env = r.environment.is_(None) if environment is None else r.environment == environment
            seen = conn.execute(
                sa.select(r.id).where(r.agent == agent, r.action_name == action, env,
                                      t.in_state(State.SUCCEEDED.value)).limit(1)
            ).first()
            failures = 0
            if run_id is not None:
                failures = int(conn.execute(
                    sa.select(sa.func.count()).select_from(t.requests).where(
                        r.agent == agent, r.run_id == run_id, r.action_name == action,
                        t.in_state(State.FAILED.value))
                ).scalar_one())
            novel_recipients: tuple[str, ...] = ()
            if recipients:
                known = {
                    x for (x,) in conn.execute(
                        sa.select(t.recipients.c.recipient).where(
                            t.recipients.c.agent == agent,
                            t.recipients.c.recipient.in_([str(x) for x in recipients]))
                    )
                }
                novel_recipients = tuple(str(x) for x in recipients if str(x) not in known)
            agent_row = conn.execute(
                sa.select(t.agents.c.level).where(t.agents.c.name == agent)
            ).first()
            paused = conn.execute(
                sa.select(t.pauses.c.reason).where(t.pauses.c.scope.in_([agent, "*"]))
                .order_by(t.pauses.c.scope.desc())
            ).first()
        from interlock.policy.records import Facts, Level

        level = agent_row.level if agent_row is not None else None
        return Facts(
            novel=seen is None, novel_recipients=novel_recipients, failures=failures,
            level=None if level is None else Level(level),
            paused=None if paused is None else str(paused.reason),
        )

    # -- agents ---------------------------------------------------------------------------

    def agent(self, name: str) -> Agent | None:
        """An agent's level and track record (None: never seen)."""
        with self._read() as conn:
            r = conn.execute(sa.select(t.agents).where(t.agents.c.name == name)).mappings().first()
        return None if r is None else _agent(dict(r))

    def agents(self) -> list[Agent]:
        """Every agent seen so far, by name."""
        with self._read() as conn:
            return [_agent(dict(r)) for r in conn.execute(
                sa.select(t.agents).order_by(t.agents.c.name)).mappings()]

    def set_level(self, name: str, level: Level | None, *, actor: str, pinned: bool = False,
                  why: str | None = None) -> None:
        """Set (or clear) an agent's autonomy level; audited. Clean approvals start over."""
        with self._write() as tx:
            tx.conn.execute(self.backend.insert_ignore(t.agents).values(name=name,
                                                                        updated_at=tx.now))
            tx.conn.execute(t.agents.update().where(t.agents.c.name == name).values(
                level=None if level is None else level.value, pinned=pinned,
                clean_approvals=0, updated_at=tx.now))
            tx.audit(actor, "autonomy.set",
                     {"agent": name, "level": None if level is None else level.value,
                      "pinned": pinned, "why": why})

    # -- decision memory ------------------------------------------------------------------

    def grants(self, *, agent: str | None = None, action: str | None = None,
               live: bool = False) -> list[Grant]:
        """Grants, newest first; `live`: only those neither revoked nor expired."""
        g = t.grants.c
        query = sa.select(t.grants).order_by(g.id.desc())
        if agent is not None:
            query = query.where(g.agent == agent)
        if action is not None:
            query = query.where(g.action_name == action)
        if live:
            query = query.where(g.revoked_at.is_(None), sa.or_(
                g.expires_at.is_(None), g.expires_at > self.clock.now()))
        with self._read() as conn:
            return [grants.from_row(dict(r)) for r in conn.execute(query).mappings()]

    def revoke_grant(self, grant_id: str, *, actor: str) -> Grant:
        """Stop a grant from applying; audited. NotFound unless it is live."""
        with self._write() as tx:
            done = tx.conn.execute(t.grants.update().where(
                t.grants.c.id == grant_id, t.grants.c.revoked_at.is_(None)
            ).values(revoked_at=tx.now))
            if done.rowcount != 1:
                raise NotFound(f"no live grant `{grant_id}`")
            tx.audit(actor, "grant.revoked", {"grant": grant_id})
            row = tx.conn.execute(sa.select(t.grants).where(t.grants.c.id == grant_id)
                                  ).mappings().one()
            return grants.from_row(dict(row))

    # -- tokens ---------------------------------------------------------------------------

    def create_token(
        self, *, kind: TokenKind, name: str, actor: str, groups: Sequence[str] = (),
        environment: str | None = None, actions: Sequence[str] | None = None,
        expires_at: float | None = None,
    ) -> tuple[Token, str]:
        """A new token and its secret; only the secret's sha256 is kept."""
        if kind not in ("agent", "reviewer", "admin"):
            raise BadInput(f"a token is for an agent, a reviewer or an admin, not `{kind}`")
        if kind == "agent" and name == levels.INTERLOCK_AGENT:
            # the built-in agent whose requests are changes to interlock itself: a token in
            # its name could claim them (an approved token issuance, a level change)
            raise BadInput("`interlock` is the name of interlock's own agent; choose another",
                           code="reserved_name")
        secret = "il_" + secrets.token_urlsafe(32)
        with self._write() as tx:
            token = Token(id=new_id(tx.now), kind=kind, name=name, groups=tuple(groups),
                          environment=environment,
                          actions=None if actions is None else tuple(actions),
                          created_at=tx.now, expires_at=expires_at, revoked_at=None)
            tx.conn.execute(t.tokens.insert().values(
                id=token.id, kind=kind, name=name, groups=dumps(list(groups)),
                environment=environment,
                actions=None if actions is None else dumps(list(actions)),
                secret_hash=hash_secret(secret), created_at=tx.now, expires_at=expires_at))
            tx.audit(actor, "token.created",
                     {"id": token.id, "kind": kind, "name": name, "groups": list(groups),
                      "environment": environment, "expires_at": expires_at})
        return token, secret

    def token_by_secret(self, secret: str) -> Token | None:
        """The live token with this secret (None: unknown, revoked or expired)."""
        with self._read() as conn:
            r = conn.execute(sa.select(t.tokens).where(
                t.tokens.c.secret_hash == hash_secret(secret))).mappings().first()
        if r is None or r["revoked_at"] is not None:
            return None
        if r["expires_at"] is not None and r["expires_at"] <= self.clock.now():
            return None
        return _token(dict(r))

    def tokens(self) -> list[Token]:
        """Every token, without secrets."""
        with self._read() as conn:
            return [_token(dict(r)) for r in conn.execute(
                sa.select(t.tokens).order_by(t.tokens.c.id)).mappings()]

    def revoke_token(self, token_id: str, *, actor: str) -> None:
        """Stop a token from working; audited."""
        with self._write() as tx:
            result = tx.conn.execute(t.tokens.update().where(
                t.tokens.c.id == token_id, t.tokens.c.revoked_at.is_(None)
            ).values(revoked_at=tx.now))
            if result.rowcount != 1:
                raise NotFound(f"no live token `{token_id}`")
            tx.audit(actor, "token.revoked", {"id": token_id})

    # -- the kill switch ------------------------------------------------------------------

    def pause(self, *, agent: str | None, reason: str, actor: str) -> Pause:
        """Deny every new action of `agent` (None: of all agents) with `reason`; returns the
        pause now in force."""
        scope = _scope(agent)
        if not reason.strip():
            raise BadInput("`reason` must say why, for the agents and the audit trail")
        with self._write() as tx:
            tx.conn.execute(t.pauses.delete().where(t.pauses.c.scope == scope))
            tx.conn.execute(t.pauses.insert().values(scope=scope, reason=reason, actor=actor,
                                                     at=tx.now))
            tx.audit(actor, "pause", {"agent": agent, "reason": reason})
            return Pause(agent=agent, reason=reason, actor=actor, at=tx.now)

    def unpause(self, *, agent: str | None, actor: str) -> None:
        """Lift a pause."""
        scope = _scope(agent)
        with self._write() as tx:
            tx.conn.execute(t.pauses.delete().where(t.pauses.c.scope == scope))
            tx.audit(actor, "unpause", {"agent": agent})

    def pauses(self) -> list[Pause]:
        """The pauses in force: everyone's first, then each agent's by name."""
        with self._read() as conn:
            rows = conn.execute(sa.select(t.pauses)).all()
        found = [Pause(agent=None if r.scope == "*" else r.scope, reason=r.reason,
                       actor=r.actor, at=r.at) for r in rows]
        return sorted(found, key=lambda p: (p.agent is not None, p.agent or ""))

    def paused(self, agent: str) -> str | None:
        """The reason `agent` is paused (its own pause first, then everyone's), or None."""
        with self._read() as conn:
            r = conn.execute(sa.select(t.pauses.c.reason).where(
                t.pauses.c.scope.in_([agent, "*"])).order_by(t.pauses.c.scope.desc())).first()
        return None if r is None else str(r.reason)


def _scope(agent: str | None) -> str:
    """A pause's key: the agent's name, or `*` for every agent."""
    if agent is None:
        return "*"
    if not agent.strip() or agent != agent.strip() or agent == "*":
        raise BadInput("`agent` names one agent; leave it out to pause every agent")
    return agent


def _agent(r: dict[str, Any]) -> Agent:
    return Agent(name=r["name"], level=r["level"], pinned=bool(r["pinned"]),
                 approvals=r["approvals"], clean_approvals=r["clean_approvals"],
                 denials=r["denials"], reversals=r["reversals"],
                 failures_after_approval=r["failures_after_approval"])


def _token(r: dict[str, Any]) -> Token:
    return Token(id=r["id"], kind=r["kind"], name=r["name"], groups=tuple(json.loads(r["groups"])),
                 environment=r["environment"],
                 actions=None if r["actions"] is None else tuple(json.loads(r["actions"])),
                 created_at=r["created_at"], expires_at=r["expires_at"],
                 revoked_at=r["revoked_at"])


def open_store(
    url: str, *, clock: Clock | None = None, connect_args: dict[str, Any] | None = None,
    auto_upgrade: bool = False, create: bool = True,
) -> Store:
    """Open the store at a database URL (`sqlite:///FILE`, `postgresql://...`).

    An empty database is migrated; one whose schema is older is refused unless
    `auto_upgrade`, and one newer than this interlock is always refused.

    `create=False` is for tools that read or change a store that must exist already (verify
    the trail, pause agents, issue a token): a SQLite file that is not there, or a database
    with no interlock tables, is then refused instead of being created empty, so a mistyped
    `--db` is an error, not a new store that reports nothing wrong."""
    if not url:
        raise BadInput("no database URL given")
    if not create:
        _require_file(url)
    return Store(url, clock=clock, connect_args=connect_args, auto_upgrade=auto_upgrade,
                 create=create)


def _require_file(url: str) -> None:
    """Refuse a SQLite URL whose file does not exist (connecting would create it)."""
    if backend_for_url(url).name != "sqlite":
        return
    path = sa.engine.make_url(url).database
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    if not Path(path).exists():
        raise BadInput(f"no database at `{path}`: check --db (`interlock serve` creates the "
                       "database on its first start)")
