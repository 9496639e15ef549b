"""The request lifecycle of SPEC §4: submit, vote, delegate, claim, outcome, cancel, resolve, sweep.

Each method is one write transaction; states change only through `StoreBase._transition`.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Literal

import sqlalchemy as sa

from interlock.errors import BadInput, Conflict, Forbidden, Gone, NotFound, TooMany
from interlock.policy.model import Autonomy
from interlock.policy.records import PolicyResult, Requirements
from interlock.policy.redact import compile_paths, redact
from interlock.store import autonomy as levels
from interlock.store import grants, quorum
from interlock.store import schema as t
from interlock.store.audit import sha256_hex
from interlock.store.core import (
    StoreBase,
    digest_of,
    dumps,
    new_id,
    requirements_of,
    to_request,
)
from interlock.store.grants import Grant, NewGrant
from interlock.store.records import (
    CLAIMABLE,
    DECISION_STATE,
    Admission,
    AgentPaused,
    Claim,
    Request,
    Reviewer,
    State,
    Verdict,
)
from interlock.store.tx import Row, Tx

_INSERT_VOTE = t.votes.insert()
_INSERT_REQUEST = t.requests.insert()
_BATCH = (
    sa.select(t.requests.c.id)
    .where(t.requests.c.agent == sa.bindparam("agent"),
           t.requests.c.batch_id == sa.bindparam("batch"), t.in_state(State.PENDING.value))
    .order_by(t.requests.c.id)
)
_BY_KEY = sa.select(t.requests).where(
    t.requests.c.agent == sa.bindparam("agent"),
    t.requests.c.idempotency_key == sa.bindparam("key"),
)
#: A request locked for a vote, with the voter's votes of its current round: one row per
#: such vote (or one row with NULLs), so the repeat check costs no round trip of its own.
_LOAD_FOR_VOTE = (
    sa.select(t.requests, t.votes.c.verdict.label("earlier_verdict"),
              t.votes.c.args.label("earlier_args"))
    .select_from(t.requests.outerjoin(t.votes, sa.and_(
        t.votes.c.request_id == t.requests.c.id,
        t.votes.c.reviewer == sa.bindparam("reviewer"),
        t.votes.c.round == t.requests.c.round,
    )))
    .where(t.requests.c.id == sa.bindparam("rid"))
    .with_for_update(of=t.requests)
)
_CLAIMED = frozenset({State.EXECUTING, State.SUCCEEDED, State.FAILED, State.UNKNOWN})


class LifecycleStore(StoreBase):
    """Requests from submission to outcome."""

    autonomy: Autonomy | None = None
    """The policy's `autonomy` section: what moves an agent's level (None: nothing does)."""

    # -- submit ----------------------------------------------------------------------

    def submit(
        self,
        *,
        agent: str,
        action: Mapping[str, Any],
        result: PolicyResult,
        redact_paths: Sequence[str] = (),
        grant: Grant | None = None,
        admit: Admission | None = None,
    ) -> Request:
        """Store an action with the policy's result, masked by `redact_paths`, in the state its
        decision leads to. The same idempotency key with the same body returns the first
        request; with another body it is a Conflict `idempotency_conflict`.

        `grant`: the decision-memory grant that turned the result into `allow`; its use is
        audited here, and GrantGone is raised if it was revoked or expired meanwhile.
        `admit`: the pending limit and pause checks, made in the same transaction."""
        return self._submit(agent, action, result, redact_paths, None, grant, admit)[0]

    def by_idempotency_key(self, agent: str, key: str) -> Request | None:
        """The request an agent submitted with this idempotency key, if any."""
        with self._read() as conn:
            row = conn.execute(_BY_KEY, {"agent": agent, "key": key}).mappings().first()
        return None if row is None else to_request(dict(row))

    def submit_claimed(
        self,
        *,
        agent: str,
        action: Mapping[str, Any],
        result: PolicyResult,
        lease: float,
        redact_paths: Sequence[str] = (),
        grant: Grant | None = None,
        admit: Admission | None = None,
    ) -> tuple[Request, Claim | None]:
        """`submit`, and when the decision lets the action run at once (allow / notify),
        claim it in the same transaction: one commit instead of two for the common case.

        The claim is returned only when this call created and claimed the request; an
        idempotent replay returns the first request and no claim, so nothing runs twice."""
        return self._submit(agent, action, result, redact_paths, lease, grant, admit)

    def _submit(
        self,
        agent: str,
        action: Mapping[str, Any],
        result: PolicyResult,
        redact_paths: Sequence[str],
        lease: float | None,
        grant: Grant | None = None,
        admit: Admission | None = None,
    ) -> tuple[Request, Claim | None]:
        try:
            return self._submit_once(agent, action, result, redact_paths, lease, grant, admit)
        except Exception as exc:
            if not _key_taken(exc):
                raise
        # Another write stored a request under this idempotency key between this one's
        # read of the key and its insert (PostgreSQL runs writes side by side), and the
        # unique index refused the second: now it is a replay, answered as one.
        return self._submit_once(agent, action, result, redact_paths, lease, grant, admit)

    def _submit_once(
        self,
        agent: str,
        action: Mapping[str, Any],
        result: PolicyResult,
        redact_paths: Sequence[str],
        lease: float | None,
        grant: Grant | None,
        admit: Admission | None,
    ) -> tuple[Request, Claim | None]:
        masked = redact(action, compile_paths(redact_paths)) if redact_paths else dict(action)
        checkpoint = masked.pop("checkpoint", None)
        action_text = dumps(masked)
        stored = json.loads(action_text)
        args = stored.get("args") or {}
        if not isinstance(args, dict):
            raise BadInput("`args` must be an object")
        key = _opt_str(stored, "idempotency_key")
        target = DECISION_STATE[result.decision]
        reqs = result.requirements
        if target is State.PENDING and (reqs is None or not reqs.gates):
            raise BadInput("a require_approval result needs requirements with at least one gate")
        context = stored.get("context") if isinstance(stored.get("context"), dict) else {}
        body_hash = _body_hash(action_text, checkpoint)
        with self._write(pipelined=True) as tx:
            if key is not None:
                existing = tx.fetch_row(_BY_KEY, {"agent": agent, "key": key})
                if existing is not None:
                    if existing["body_hash"] != body_hash:
                        raise Conflict(
                            f"idempotency key `{key}` was used for another action "
                            f"(request `{existing['id']}`)",
                            code="idempotency_conflict",
                        )
                    return to_request(existing), None
            if admit is not None:
                _admit(tx, agent, admit)
            revision_of = _opt_str(stored, "revision_of")
            if revision_of is not None:
                prior = self._load(tx, revision_of, lock=False)
                if prior["agent"] != agent:
                    raise NotFound(f"no request `{revision_of}`")
            rid = new_id(tx.now)
            progress = quorum.initial(reqs, tx.now) if target is State.PENDING and reqs else {
                "gates": []
            }
            row: Row = {
                "id": rid,
                "agent": agent,
                "action_name": str(stored.get("action", "")),
                "environment": _opt_str(stored, "environment"),
                "run_id": _opt_str(context, "run_id"),
                "action": action_text,
                "body_hash": body_hash,
                "result": dumps(result.to_json()),
                "policy_hash": result.policy_hash,
                "state": State.SUBMITTED.value,
                "version": 0,
                # the canonical text of `stored` is `action_text`: no second encoding
                "digest": sha256_hex(action_text) if isinstance(stored.get("args"), dict)
                else digest_of(stored, args),
                "risk": result.risk.value,
                "decision": result.decision.value,
                "requirements": None if reqs is None else dumps(reqs.to_json()),
                "progress": dumps(progress),
                "round": 0,
                "final_args": dumps(args),
                "edited": False,
                "checkpoint": None if checkpoint is None else dumps(checkpoint),
                "idempotency_key": key,
                "batch_id": _opt_str(stored, "batch_id"),
                "revision_of": revision_of,
                "reason": "; ".join(result.reasons) if target is State.DENIED else None,
                "created_at": tx.now,
                "updated_at": tx.now,
                "decided_at": None,
                "deadline": None,
                "ttl_expires_at": None,
                "lease_expires_at": None,
            }
            actor = f"agent:{agent}"
            tx.audit(
                actor, "submitted",
                {"action": row["action_name"], "decision": row["decision"], "risk": row["risk"],
                 "rules": list(result.rules), "policy_hash": result.policy_hash},
                request_id=rid, digest=row["digest"],
            )
            if grant is not None:
                grants.use(tx, grant, rid, row["digest"])
            values: dict[str, Any] = {}
            if target is State.PENDING:
                values["deadline"] = quorum.deadline(progress)
            else:
                values["decided_at"] = tx.now
            row = self._transition(tx, row, target, actor="policy", values=values,
                                   new_request=True)
            if lease is None or target not in (State.ALLOWED, State.NOTIFIED):
                tx.insert(_INSERT_REQUEST, row)
                return to_request(row, action=stored), None
            row = self._transition(
                tx, row, State.EXECUTING, actor=actor, data={"lease": lease},
                values={"lease_expires_at": tx.now + lease, "ttl_expires_at": None},
                new_request=True,
            )
            tx.insert(_INSERT_REQUEST, row)
            claim = Claim(
                request_id=rid, args=json.loads(row["final_args"]),
                checkpoint=None if row["checkpoint"] is None else json.loads(row["checkpoint"]),
                lease_expires_at=row["lease_expires_at"], digest=row["digest"],
            )
            return to_request(row, action=stored), claim

    # -- votes -------------------------------------------------------------------------

    def vote(
        self,
        request_id: str,
        *,
        reviewer: Reviewer,
        verdict: Verdict,
        note: str | None = None,
        args: dict[str, Any] | None = None,
        version: int | None = None,
        new_requirements: Requirements | None = None,
        confirmed: bool = False,
        redact_paths: Sequence[str] = (),
        remember: NewGrant | None = None,
    ) -> Request:
        """Record a vote and evaluate quorum and stages in the same transaction.

        `args` are a reviewer's edits (approve only); the caller re-ran the policy on them
        and passes the stricter `new_requirements`, if any, which replace the old ones.
        `remember`: a grant this approval makes, written in the same transaction."""
        if verdict not in ("approve", "deny", "request_changes"):
            raise BadInput(f"unknown verdict `{verdict}`")
        if args is not None and verdict != "approve":
            raise BadInput("only an approval may carry edited args")
        if args is not None and redact_paths:
            args = redact({"args": args}, compile_paths(redact_paths))["args"]
        with self._write(pipelined=True) as tx:
            done = self._vote(tx, request_id, reviewer=reviewer, verdict=verdict, note=note,
                              args=args, version=version, new_requirements=new_requirements,
                              confirmed=confirmed)
            if remember is not None and verdict == "approve":  # approve and remember
                grants.insert(tx, remember, agent=done.agent, action=done.action_name,
                              reviewer=reviewer, request_id=request_id)
            return done

    def vote_batch(
        self,
        batch_id: str,
        *,
        agent: str,
        reviewer: Reviewer,
        verdicts: Mapping[str, Verdict] | Verdict,
        note: str | None = None,
        confirmed: Collection[str] = (),
    ) -> tuple[list[Request], list[tuple[str, str, str]]]:
        """One vote on each pending item of an agent's batch, in one transaction.

        `verdicts` is one verdict for every pending item (approve_all / reject_all), or
        `{id: verdict}` (each); `confirmed` names the items whose typed confirmation the
        reviewer gave. Returns the items voted on and the skipped ones as
        (id, code, reason): not pending, not this reviewer's to decide, not in the batch."""
        done: list[Request] = []
        skipped: list[tuple[str, str, str]] = []
        with self._write(pipelined=True) as tx:
            pending = [r[0] for r in tx.run(_BATCH, {"agent": agent, "batch": batch_id})
                       .fetchall()]
            if isinstance(verdicts, str):
                wanted: dict[str, Verdict] = dict.fromkeys(pending, verdicts)
            else:
                wanted = dict(verdicts)
            for rid, verdict in wanted.items():
                if rid not in pending:
                    skipped.append((rid, "not_pending",
                                    f"request `{rid}` is not pending in batch `{batch_id}`"))
                    continue
                try:
                    done.append(self._vote(tx, rid, reviewer=reviewer, verdict=verdict,
                                           note=note, confirmed=rid in confirmed))
                except (Conflict, Forbidden, BadInput) as exc:  # checked before any write
                    skipped.append((rid, exc.code, exc.message))
        return done, skipped

    def _vote(
        self,
        tx: Tx,
        request_id: str,
        *,
        reviewer: Reviewer,
        verdict: Verdict,
        note: str | None = None,
        args: dict[str, Any] | None = None,
        version: int | None = None,
        new_requirements: Requirements | None = None,
        confirmed: bool = False,
    ) -> Request:
        if verdict not in ("approve", "deny", "request_changes"):
            raise BadInput(f"unknown verdict `{verdict}`")
        found = tx.fetch_rows(_LOAD_FOR_VOTE, {"rid": request_id, "reviewer": reviewer.name})
        if not found:
            raise NotFound(f"no request `{request_id}`")
        earlier = [(r.pop("earlier_verdict"), r.pop("earlier_args")) for r in found]
        row = found[0]
        wanted = None if args is None else dumps(args)
        if any(v == verdict and a == wanted for v, a in earlier):  # the same vote again
            return to_request(row)
        if version is not None and version != row["version"]:
            raise Conflict(
                f"request `{request_id}` is at version {row['version']}, not {version}: "
                "reload it and vote again",
                code="stale_version",
            )
        if reviewer.name == row["agent"]:
            raise Forbidden(
                f"`{reviewer.name}` proposed request `{request_id}` and may not decide it",
                code="self_approval",
            )
        if row["state"] != State.PENDING.value:
            raise Conflict(
                f"request `{request_id}` is {row['state']}: it no longer takes votes",
                code="not_pending",
            )
        reqs = requirements_of(row["requirements"])
        progress = json.loads(row["progress"])
        stages = quorum.allowed_stages(reqs, progress, reviewer)
        if not stages:
            raise Forbidden(
                f"`{reviewer.name}` is not an approver of request `{request_id}` "
                "at its current stage",
                code="not_an_approver",
            )
        actor = f"reviewer:{reviewer.name}"
        if verdict != "approve":
            labels = [quorum.label(reqs, gi, si) for gi, si in stages]
            self._insert_vote(tx, row, reviewer, verdict, note, None, labels, confirmed)
            tx.audit(actor, "vote", {"verdict": verdict, "note": note, "stages": labels},
                     request_id=request_id, digest=row["digest"])
            to = State.DENIED if verdict == "deny" else State.CHANGES_REQUESTED
            row = self._transition(
                tx, row, to, actor=actor, data={"note": note},
                values={"reason": note, "decided_at": tx.now, "deadline": None},
            )
            if to is State.DENIED:
                self._count(tx, row["agent"], denials=1)
                levels.step(tx, self.autonomy, row["agent"], "denied", request_id=request_id)
            return to_request(row)
        values: dict[str, Any] = {}
        if args is not None:
            action = json.loads(row["action"])
            # Votes cast before an edit approved other args: a new round begins.
            values.update(final_args=dumps(args), edited=True,
                          digest=digest_of(action, args), round=row["round"] + 1)
        if new_requirements is not None:
            reqs = new_requirements
            progress = quorum.initial(reqs, tx.now)
            values.update(requirements=dumps(reqs.to_json()), round=row["round"] + 1)
        counted = quorum.approve(reqs, progress, reviewer, tx.now, edited=args is not None)
        if not counted.counted and args is None and new_requirements is None:
            return to_request(row)  # already counted in every gate it could count in
        labels = [quorum.label(reqs, gi, si) for gi, si in counted.counted]
        done = [quorum.label(reqs, gi, si) for gi, si in counted.completed]
        vote_round = values.get("round", row["round"])
        self._insert_vote(tx, row, reviewer, verdict, note, args, labels, confirmed,
                          vote_round=vote_round)
        values.update(progress=dumps(progress), deadline=quorum.deadline(progress))
        data: dict[str, Any] = {"verdict": verdict, "note": note, "stages": labels,
                                "completed": done, "confirmed": confirmed}
        if args is not None:
            data["args"] = args
        if new_requirements is not None:
            data["requirements"] = "replaced"
        event = "vote.edit" if args is not None else "vote"
        if counted.all_done:
            tx.audit(actor, event, data, request_id=request_id,
                     digest=values.get("digest", row["digest"]))
            values.update(decided_at=tx.now, deadline=None,
                          ttl_expires_at=tx.now + reqs.approval_ttl)
            row = self._transition(tx, row, State.APPROVED, actor=actor, values=values)
            edited = bool(row["edited"])
            self._count(tx, row["agent"], approvals=1, clean_approvals=0 if edited else 1)
            if not edited:
                levels.step(tx, self.autonomy, row["agent"], "clean_approval",
                              request_id=request_id)
        else:
            row = self._bump(tx, row, actor=actor, event=event, data=data, values=values)
        return to_request(row)


    def _insert_vote(
        self, tx: Tx, row: Row, reviewer: Reviewer, verdict: str, note: str | None,
        args: dict[str, Any] | None, labels: list[str], confirmed: bool,
        *, vote_round: int | None = None,
    ) -> None:
        tx.insert(
            _INSERT_VOTE,
            {"request_id": row["id"], "reviewer": reviewer.name, "verdict": verdict,
             "note": note, "args": None if args is None else dumps(args),
             "counted": dumps(labels), "confirmed": confirmed,
             "round": row["round"] if vote_round is None else vote_round, "at": tx.now},
        )

    def _count(self, tx: Tx, agent: str, **deltas: int) -> None:
        """Add to an agent's counters, creating its row on first use (one upsert)."""
        keys = tuple(sorted(k for k, v in deltas.items() if v))

        def build() -> Any:
            ins = self.backend.insert(t.agents)
            return ins.on_conflict_do_update(
                index_elements=[t.agents.c.name],
                set_={**{k: t.agents.c[k] + ins.excluded[k] for k in keys},
                      "updated_at": ins.excluded.updated_at},
            )

        stmt = self._statement("count:" + ",".join(keys), build)
        params = {"name": agent, "updated_at": tx.now, **{k: deltas[k] for k in keys}}
        if self.autonomy is None:  # nothing reads the counters back in this transaction
            tx.insert(stmt, params)
        else:  # the autonomy step reads them
            tx.run(stmt, params)

    def delegate(
        self, request_id: str, *, reviewer: Reviewer, to: Sequence[str],
        version: int | None = None,
    ) -> Request:
        """Add approvers (groups or `user:NAME`) to the stages this reviewer may vote in."""
        with self._write() as tx:
            row = self._load(tx, request_id, lock=True)
            if version is not None and version != row["version"]:
                raise Conflict(f"request `{request_id}` is at version {row['version']}, "
                               f"not {version}", code="stale_version")
            if row["state"] != State.PENDING.value:
                raise Conflict(f"request `{request_id}` is {row['state']}: only a pending "
                               "request can be delegated", code="not_pending")
            reqs = requirements_of(row["requirements"])
            progress = json.loads(row["progress"])
            stages = quorum.allowed_stages(reqs, progress, reviewer)
            if not stages:
                raise Forbidden(f"`{reviewer.name}` is not an approver of request "
                                f"`{request_id}` at its current stage", code="not_an_approver")
            named = quorum.delegable(reqs)
            outside = [who for who in to if who not in named]
            if outside:
                raise BadInput(
                    f"request `{request_id}` can be delegated only to its rules' approvers or "
                    f"escalate_to ({', '.join(sorted(named))}), not "
                    f"{', '.join(f'`{who}`' for who in outside)}",
                    code="not_an_approver_here",
                )
            added = quorum.delegate(reqs, progress, stages, list(to))
            row = self._bump(
                tx, row, actor=f"reviewer:{reviewer.name}", event="delegated",
                data={"to": list(to), "added": added,
                      "stages": [quorum.label(reqs, gi, si) for gi, si in stages]},
                values={"progress": dumps(progress)},
            )
            return to_request(row)

    # -- claim and outcome -------------------------------------------------------------

    def claim(self, request_id: str, *, agent: str, lease: float) -> Claim:
        """Claim a decided request once; every other answer is SPEC §4's."""
        known = self._known(request_id, lambda r: r["agent"] == agent
                            and State(r["state"]) in CLAIMABLE)
        if known is not None:  # no load: the claim's compare-and-set checks the known row
            try:
                with self._write(pipelined=True) as tx:
                    claimed = self._claim(tx, known, agent, lease)
                return _claimed(request_id, claimed)
            except Conflict as exc:
                if exc.code != "state_changed":
                    raise
                self._forget(request_id)  # it moved on elsewhere: ask the database
        with self._write(pipelined=True) as tx:
            claimed = self._claim(tx, self._load(tx, request_id, lock=True), agent, lease)
        return _claimed(request_id, claimed)

    def _claim(self, tx: Tx, row: Row, agent: str, lease: float) -> Claim | None:
        """The claim of `row`, or None where its approval outlived its TTL and it was moved
        back to pending (written: the caller answers once that has committed)."""
        request_id = row["id"]
        if row["agent"] != agent:
            raise NotFound(f"no request `{request_id}`")
        state = State(row["state"])
        ttl = row["ttl_expires_at"]
        if state is State.APPROVED and ttl is not None and tx.now >= ttl:
            reqs = requirements_of(row["requirements"])
            progress = json.loads(row["progress"])
            reopened = quorum.reopen_last(reqs, progress, tx.now)
            self._transition(
                tx, row, State.PENDING, actor="system",
                data={"why": "approval ttl passed before the claim",
                      "reopened": [quorum.label(reqs, gi, si) for gi, si in reopened]},
                values={"progress": dumps(progress), "round": row["round"] + 1,
                        "deadline": quorum.deadline(progress), "ttl_expires_at": None,
                        "decided_at": None},
            )
            return None
        if state in CLAIMABLE:
            row = self._transition(
                tx, row, State.EXECUTING, actor=f"agent:{agent}",
                data={"lease": lease},
                values={"lease_expires_at": tx.now + lease, "ttl_expires_at": None},
            )
            return Claim(
                request_id=request_id, args=json.loads(row["final_args"]),
                checkpoint=None if row["checkpoint"] is None
                else json.loads(row["checkpoint"]),
                lease_expires_at=row["lease_expires_at"], digest=row["digest"],
            )
        if state is State.PENDING:
            raise Conflict(f"request `{request_id}` is pending: not decided yet",
                           code="not_decided")
        if state in _CLAIMED:
            raise Conflict(f"request `{request_id}` was already claimed ({state.value})",
                           code="already_claimed")
        raise Gone(row["reason"] or f"request `{request_id}` is {state.value}",
                   code=state.value)

    def outcome(
        self, request_id: str, *, agent: str, status: Literal["succeeded", "failed"],
        summary: str | None = None,
    ) -> Request:
        """Report how a claimed action went; only from executing."""
        to = _outcome_state(status)
        known = self._known(request_id, lambda r: r["agent"] == agent
                            and r["state"] == State.EXECUTING.value)
        if known is not None:  # no load: the compare-and-set checks the known row
            try:
                with self._write(pipelined=True) as tx:
                    return self._outcome(tx, known, agent, to, summary)
            except Conflict as exc:
                if exc.code != "state_changed":
                    raise
                self._forget(request_id)  # it moved on elsewhere: ask the database
        with self._write(pipelined=True) as tx:
            row = self._load(tx, request_id, lock=True)
            return self._outcome(tx, row, agent, to, summary)

    def _outcome(self, tx: Tx, row: Row, agent: str, to: State,
                 summary: str | None) -> Request:
        request_id = row["id"]
        if row["agent"] != agent:
            raise NotFound(f"no request `{request_id}`")
        if row["state"] != State.EXECUTING.value:
            # unknown -> succeeded|failed is on the chart, but only for a person (resolve)
            raise Conflict(
                f"request `{request_id}` is {row['state']}: an outcome is reported only "
                "for an executing request", code="invalid_transition",
            )
        row = self._transition(tx, row, to, actor=f"agent:{agent}",
                               data={"summary": summary},
                               values={"reason": summary, "lease_expires_at": None})
        action = json.loads(row["action"])
        self._after_outcome(tx, row, action)
        return to_request(row, action=action)

    def _after_outcome(self, tx: Tx, row: Row, action: dict[str, Any]) -> None:
        if row["state"] == State.SUCCEEDED.value:
            recipients = action.get("recipients")
            if isinstance(recipients, list) and recipients:
                tx.run(
                    self._statement("recipient", lambda: self.backend.insert_ignore(t.recipients)),
                    [{"agent": row["agent"], "recipient": str(r), "first_at": tx.now}
                     for r in recipients],
                )
        elif row["decision"] == "require_approval":
            self._count(tx, row["agent"], failures_after_approval=1)
            levels.step(tx, self.autonomy, row["agent"], "failed_after_approval",
                          request_id=row["id"])

    def cancel(self, request_id: str, *, agent: str, reason: str | None = None,
               actor: str | None = None) -> Request:
        """The agent withdraws a request it has not claimed (`actor`: who did it for the
        agent, e.g. the admin who asked for one of interlock's own changes)."""
        with self._write(pipelined=True) as tx:
            row = self._load(tx, request_id, lock=True)
            if row["agent"] != agent:
                raise NotFound(f"no request `{request_id}`")
            row = self._transition(
                tx, row, State.CANCELLED, actor=actor or f"agent:{agent}",
                data={"reason": reason},
                values={"reason": reason or "cancelled by the agent", "deadline": None,
                        "ttl_expires_at": None},
            )
            return to_request(row)

    def resolve(
        self, request_id: str, *, reviewer: Reviewer,
        status: Literal["done", "dismissed", "succeeded", "failed"], note: str | None = None,
    ) -> Request:
        """A person closes a suggested action (done/dismissed) or an unknown outcome."""
        to = State(status) if status in ("done", "dismissed", "succeeded", "failed") else None
        if to is None:
            raise BadInput(f"unknown resolution `{status}`")
        with self._write(pipelined=True) as tx:
            row = self._load(tx, request_id, lock=True)
            current = State(row["state"])
            fits = (current is State.SUGGESTED and to in (State.DONE, State.DISMISSED)) or (
                current is State.UNKNOWN and to in (State.SUCCEEDED, State.FAILED)
            )
            if not fits:
                raise Conflict(
                    f"request `{request_id}` is {current.value}: it cannot be resolved as "
                    f"{to.value}", code="invalid_transition",
                )
            row = self._transition(tx, row, to, actor=f"reviewer:{reviewer.name}",
                                   data={"note": note}, values={"reason": note})
            action = json.loads(row["action"])
            if current is State.UNKNOWN:
                self._after_outcome(tx, row, action)
            return to_request(row, action=action)


def _claimed(request_id: str, claimed: Claim | None) -> Claim:
    """A claim's answer once its write committed."""
    if claimed is None:
        raise Conflict(
            f"the approval of request `{request_id}` outlived its ttl: it is pending again "
            "for re-confirmation",
            code="reconfirmation_required",
        )
    return claimed


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return None if value is None else str(value)


def _body_hash(action_text: str, checkpoint: Any) -> str:
    return sha256_hex(action_text + "\n" + dumps(checkpoint))


def _outcome_state(status: str) -> State:
    if status == "succeeded":
        return State.SUCCEEDED
    if status == "failed":
        return State.FAILED
    raise BadInput(f"an outcome is `succeeded` or `failed`, not `{status}`")


# One round trip for both admission checks: the agent's own pause before everyone's
# ('*' sorts first, so descending puts the agent's), and its pending count (partial index).
_ADMIT = sa.select(
    sa.select(t.pauses.c.reason)
    .where(t.pauses.c.scope.in_([sa.bindparam("agent"), sa.literal("*")]))
    .order_by(t.pauses.c.scope.desc()).limit(1).scalar_subquery().label("paused"),
    sa.select(sa.func.count()).select_from(t.requests)
    .where(t.requests.c.agent == sa.bindparam("agent"), t.in_state(State.PENDING.value))
    .scalar_subquery().label("pending"),
)


def _key_taken(exc: BaseException) -> bool:
    """Whether `exc` is the requests' unique index on (agent, idempotency key) refusing an
    insert (psycopg's error, raw or as SQLAlchemy's `orig`)."""
    diag = getattr(getattr(exc, "orig", exc), "diag", None)
    return getattr(diag, "constraint_name", None) == "uq_requests_idempotency"


def _admit(tx: Tx, agent: str, admit: Admission) -> None:
    """The pause and pending-limit checks of a new submission, inside its transaction."""
    if not admit.unpaused and admit.pending_limit is None:
        return
    found = tx.fetch_row(_ADMIT, {"agent": agent})
    assert found is not None
    if admit.unpaused and found["paused"] is not None:
        raise AgentPaused(str(found["paused"]))
    limit = admit.pending_limit
    if limit is not None and int(found["pending"]) >= limit:
        raise TooMany(
            f"agent `{agent}` has {limit} requests waiting for people already; "
            "wait for decisions before submitting more",
            code="pending_limit",
        )
