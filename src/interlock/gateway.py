"""The one joint between policy and store: submit -> decide -> claim -> outcome.

Every face (HTTP API, reviewer UI, CLI, SDK, integrations) calls these methods and nothing
below them: identity checks, policy evaluation with the store's facts, limits, the kill
switch, re-evaluation of edited arguments and typed confirmation all live here.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from interlock import autonomy, grants, jsonvalue
from interlock.errors import BadInput, Forbidden, NotFound, TooMany
from interlock.insights import apply as policy_change
from interlock.policy import Policy
from interlock.policy.match import compile_glob
from interlock.policy.records import (
    NO_FACTS,
    Decision,
    Facts,
    PolicyResult,
    Requirements,
)
from interlock.store import (
    Admission,
    AgentPaused,
    Annotation,
    Claim,
    Request,
    Reviewer,
    State,
    Store,
    Vote,
)
from interlock.store.grants import Grant, GrantGone, NewGrant
from interlock.store.records import Verdict

#: Fields the SDK and integrations take from `args` when the action lacks them (SPEC §1).
FILLED_FROM_ARGS = ("amount", "currency", "recipients", "affected_records", "environment")
#: Groups every admin belongs to, besides their own.
ADMIN_GROUP = "admin"

Role = Literal["agent", "reviewer", "admin"]


@dataclass(frozen=True, kw_only=True)
class Principal:
    """Who is calling, as their token says."""

    role: Role
    """agent, reviewer or admin."""
    name: str
    """Agent name or reviewer name."""
    groups: tuple[str, ...] = ()
    """Reviewer groups (admins are also in `admin`)."""
    environment: str | None = None
    """An agent token's pinned environment."""
    actions: tuple[str, ...] = ()
    """An agent token's allowed action globs (empty: any)."""
    token_id: str | None = None
    """The token's id, for the audit trail."""

    @property
    def reviewer(self) -> Reviewer:
        groups = self.groups if self.role != "admin" else (*self.groups, ADMIN_GROUP)
        return Reviewer(name=self.name, groups=tuple(dict.fromkeys(groups)))


@dataclass(frozen=True, kw_only=True)
class Submitted:
    """What `submit` answers: the stored request and the policy's explanation of it."""

    request: Request
    result: PolicyResult
    claim: Claim | None = None
    """Set when `submit(..., claim=True)` also claimed the request (allow / notify)."""


@dataclass(frozen=True, kw_only=True)
class BatchOutcome:
    """The answer to a batch decision."""

    results: list[dict[str, Any]] = field(default_factory=list)
    """Per decided item: `{id, state, version}`."""
    skipped: list[dict[str, Any]] = field(default_factory=list)
    """Per skipped item: `{id, reason}`."""


def authenticate(store: Store, secret: str | None) -> Principal | None:
    """The principal a bearer secret stands for; None if unknown, expired or revoked."""
    if not secret:
        return None
    token = store.token_by_secret(secret)
    if token is None or token.revoked_at is not None:
        return None
    if token.expires_at is not None and token.expires_at <= store.clock.now():
        return None
    return Principal(
        role=token.kind, name=token.name, groups=token.groups,
        environment=token.environment, actions=token.actions or (), token_id=token.id,
    )


class Gateway:
    """Policy + store, with the rules that sit between them."""

    def __init__(self, policy: Policy, store: Store, *, public_url: str | None = None) -> None:
        self.policy = policy
        self.store = store
        self.public_url = (public_url or "").rstrip("/")
        self._rate: dict[str, deque[float]] = {}
        self._rate_lock = threading.Lock()
        self.swap_policy(policy)

    def swap_policy(self, policy: Policy) -> None:
        """Decide with `policy` from now on (a policy change applied while serving).

        Stored requests keep the requirements and policy hash they were decided under; a
        decision already being made finishes with the policy it started with."""
        # Promotions and demotions are written by the store, in the transaction of their cause.
        self.store.autonomy = policy.autonomy
        self._needs_history = bool(
            policy.escalation.novel_action
            or policy.escalation.novel_recipient
            or policy.escalation.repeated_failures is not None
            or policy.autonomy is not None
        )
        self.policy = policy

    # --- agents -----------------------------------------------------------------------
    def prepare(self, body: Mapping[str, Any], agent: Principal) -> dict[str, Any]:
        """The action as the policy and store will see it, checked against the token.

        Embedded callers hand over Python values no HTTP body can carry (NaN, a lone
        surrogate, any depth or size): they are refused here as the server refuses them."""
        if not isinstance(body, Mapping):
            raise BadInput("an action must be a JSON object")
        action = dict(body)
        jsonvalue.check(action, max_bytes=jsonvalue.MAX_BODY)
        name = action.get("action")
        if not isinstance(name, str) or not name.strip():
            raise BadInput("`action` is required: a non-empty string naming the operation")
        claimed = action.get("agent")
        if claimed is not None and claimed != agent.name:
            raise Forbidden(
                f"the body names agent `{claimed}` but the token is agent `{agent.name}`",
                code="agent_mismatch",
            )
        action["agent"] = agent.name
        args = action.get("args")
        if args is None:
            args = action["args"] = {}
        if not isinstance(args, dict):
            raise BadInput("`args` must be an object")
        for key in FILLED_FROM_ARGS:
            if action.get(key) is None and args.get(key) is not None:
                action[key] = args[key]
        if agent.environment is not None:
            env = action.get("environment")
            if env is not None and env != agent.environment:
                raise Forbidden(
                    f"this token is pinned to environment `{agent.environment}`, "
                    f"not `{env}`",
                    code="environment_pinned",
                )
            action["environment"] = agent.environment
        if agent.actions and not any(compile_glob(p)(name) for p in agent.actions):
            raise Forbidden(
                f"this token may only propose {', '.join(agent.actions)}, not `{name}`",
                code="action_not_allowed",
            )
        return action

    def facts_for(self, action: Mapping[str, Any], *, pause: bool = True) -> Facts:
        """What the store knows of this action's history, plus the kill switch (unless
        `pause` is False: a submit checks it in its own transaction instead)."""
        agent = str(action["agent"])
        if not self._needs_history:
            paused = self.store.paused(agent) if pause else None
            return Facts(paused=paused) if paused is not None else NO_FACTS
        context = action.get("context")
        run_id = context.get("run_id") if isinstance(context, dict) else None
        recipients = action.get("recipients")
        facts = self.store.facts(
            agent=agent,
            action=str(action["action"]),
            environment=action.get("environment") if isinstance(
                action.get("environment"), str) else None,
            run_id=run_id if isinstance(run_id, str) else None,
            recipients=[str(r) for r in recipients] if isinstance(recipients, list) else (),
        )
        return facts  # the store's facts carry the level and the pause too

    def evaluate(self, body: Mapping[str, Any], agent: Principal | None) -> PolicyResult:
        """The decision and its explanation, storing nothing (`POST /v1/evaluate`)."""
        if agent is not None and agent.role == "agent":
            action = self.prepare(body, agent)
            return self._remembered(self.policy.evaluate(action, self.facts_for(action)),
                                    action)[0]
        if not isinstance(body, Mapping):
            raise BadInput("an action must be a JSON object")
        return self.policy.evaluate(dict(body))

    def submit(
        self, body: Mapping[str, Any], agent: Principal, *, claim: bool = False
    ) -> Submitted:
        """Decide and store an action; the same idempotency key returns the first request.

        With `claim`, an action the policy lets run at once is also claimed, in the same
        transaction (an agent about to run it saves a round trip and a commit)."""
        action = self.prepare(body, agent)
        self._check_rate(agent.name, action.get("idempotency_key"))
        # The pending limit, and the pause where the facts did not read it, are checked in
        # the submit's own transaction: they hold at its commit, and cost no extra read. A
        # replay of an idempotency key is answered before them (it adds nothing); a new key
        # is a new request and meets the limit like any other.
        limit = self.policy.limits.pending_per_agent
        admit = Admission(pending_limit=limit, unpaused=not self._needs_history)
        facts = self.facts_for(action, pause=False)
        try:
            return self._decide_and_store(action, agent, facts, claim, admit)
        except AgentPaused as paused:  # paused since: decide again, knowing it
            facts = Facts(paused=paused.reason)
            admit = Admission(pending_limit=limit)
            return self._decide_and_store(action, agent, facts, claim, admit)

    def _decide_and_store(self, action: dict[str, Any], agent: Principal, facts: Facts,
                          claim: bool, admit: Admission) -> Submitted:
        evaluated = self.policy.evaluate(action, facts)
        result, grant = self._remembered(evaluated, action)
        try:
            return self._store(action, agent, result, grant, claim, admit)
        except GrantGone:  # revoked or expired since it was read: decide without it
            return self._store(action, agent, evaluated, None, claim, admit)

    def _store(self, action: dict[str, Any], agent: Principal, result: PolicyResult,
               grant: Grant | None, claim: bool, admit: Admission) -> Submitted:
        if claim:
            request, claimed = self.store.submit_claimed(
                agent=agent.name, action=action, result=result,
                lease=self.policy.defaults.claim_lease, redact_paths=self.policy.redact,
                grant=grant, admit=admit,
            )
            return Submitted(request=request, result=request.result, claim=claimed)
        request = self.store.submit(
            agent=agent.name, action=action, result=result, redact_paths=self.policy.redact,
            grant=grant, admit=admit,
        )
        # An idempotent replay returns the first request; its stored answer stands.
        return Submitted(request=request, result=request.result)

    def _remembered(
        self, result: PolicyResult, action: Mapping[str, Any]
    ) -> tuple[PolicyResult, Grant | None]:
        """Decision memory, after the policy: a grant may turn require_approval into allow."""
        if result.decision is not Decision.REQUIRE_APPROVAL or (
            action["agent"] == autonomy.INTERLOCK_AGENT
        ):
            return result, None
        found = self.store.grants(agent=str(action["agent"]), action=str(action["action"]),
                                  live=True)
        return grants.apply(result, action, found, self.store.clock.now())

    def _check_rate(self, agent: str, key: Any = None) -> None:
        """`actions_per_minute`, per agent. At the limit, a replay of an idempotency key the
        agent already used still passes (the store answers it with the first request, and it
        is not counted): a client retrying after a lost answer must get that answer."""
        limit = self.policy.limits.actions_per_minute
        now = time.monotonic()
        with self._rate_lock:
            window = self._rate.setdefault(agent, deque())
            while window and window[0] <= now - 60.0:
                window.popleft()
            if len(window) < limit:
                window.append(now)
                return
            wait = window[-limit] + 60.0 - now if limit > 0 else 60.0
        if isinstance(key, str) and self.store.by_idempotency_key(agent, key) is not None:
            return
        raise TooMany(
            f"agent `{agent}` proposed {limit} actions in the last minute; "
            f"slow down (a runaway loop stops here): the next may come in {math.ceil(wait)} s",
            code="rate_limit", retry_after=wait,
        )

    def get(self, request_id: str, who: Principal) -> Request:
        """A request, if `who` may see it (an agent sees only its own)."""
        request = self.store.get(request_id)
        if who.role == "agent" and request.agent != who.name:
            raise NotFound(f"no request `{request_id}`")
        return request

    def claim(self, request_id: str, agent: Principal) -> Claim:
        return self.store.claim(
            request_id, agent=agent.name, lease=self.policy.defaults.claim_lease
        )

    def outcome(
        self, request_id: str, agent: Principal, status: Literal["succeeded", "failed"],
        summary: str | None = None,
    ) -> Request:
        return self.store.outcome(request_id, agent=agent.name, status=status, summary=summary)

    def cancel(self, request_id: str, agent: Principal, reason: str | None = None) -> Request:
        """The agent withdraws its request; or the admin who asked for one of interlock's own
        changes (an autonomy level, a policy change, a token) withdraws that."""
        if agent.role != "admin":
            return self.store.cancel(request_id, agent=agent.name, reason=reason)
        request = self.store.get(request_id)
        if request.agent != autonomy.INTERLOCK_AGENT or (
            request.action.get("args", {}).get("requested_by") != agent.name
        ):
            raise Forbidden("agents cancel their own requests; an admin withdraws only a change "
                            "to interlock they asked for", code="not_the_asker")
        return self.store.cancel(request_id, agent=autonomy.INTERLOCK_AGENT,
                                 reason=reason or f"withdrawn by {agent.name}",
                                 actor=f"admin:{agent.name}")

    # --- reviewers --------------------------------------------------------------------
    @staticmethod
    def confirmation_phrase(request: Request) -> str:
        """What a reviewer types to approve a `confirm: typed` request, e.g. `deploy production`."""
        env = request.action.get("environment")
        name = request.action_name
        return f"{name} {env}" if isinstance(env, str) and env else name

    def decide(
        self,
        request_id: str,
        reviewer: Principal,
        verdict: Verdict,
        *,
        version: int | None = None,
        note: str | None = None,
        args: Any = None,
        confirmation: str | None = None,
        remember: Mapping[str, Any] | None = None,
    ) -> Request:
        """A reviewer's vote: approve (maybe with edits), deny (with a reason), request changes.

        `remember` (approve only): also make a decision-memory grant (SPEC §3 rule 6)."""
        if reviewer.role == "agent":
            raise Forbidden("agents do not decide requests", code="reviewers_only")
        request = self.store.get(request_id)
        if request.agent == autonomy.INTERLOCK_AGENT and (
            request.action.get("args", {}).get("requested_by") == reviewer.name
        ):
            raise Forbidden(f"`{reviewer.name}` asked for request `{request_id}` and may not "
                            "decide it", code="self_approval")
        new_requirements: Requirements | None = None
        confirmed = False
        new_grant: NewGrant | None = None
        if remember is not None:
            if verdict != "approve" or request.agent == autonomy.INTERLOCK_AGENT:
                raise BadInput("only an approval of an agent's request can be remembered")
            if not isinstance(remember, Mapping):
                raise BadInput("`remember` must be an object")
            new_grant = grants.new_grant(remember, request, reviewer.reviewer,
                                         self.store.clock.now())
        if verdict == "approve":
            confirmed = self._check_confirmation(request, confirmation)
            if args is not None:
                new_requirements = self._recheck_edit(request, args)
        elif verdict == "deny":
            if not (note or "").strip():
                raise BadInput("a deny needs a reason the agent can read (`note`)")
            if args is not None:
                raise BadInput("only an approval may carry edited args")
        elif verdict == "request_changes":
            if not (note or "").strip():
                raise BadInput("request changes needs a note saying what to change")
        else:
            raise BadInput(f"verdict must be approve, deny or request_changes, not `{verdict}`")
        decided = self.store.vote(
            request_id,
            reviewer=reviewer.reviewer,
            verdict=verdict,
            note=note,
            args=args,
            version=version,
            new_requirements=new_requirements,
            confirmed=confirmed,
            redact_paths=self.policy.redact,
            remember=new_grant,
        )
        if decided.state is State.APPROVED and autonomy.is_gated_change(decided):
            return autonomy.apply(self.store, decided.id)
        if decided.state is State.APPROVED and policy_change.is_gated_change(decided):
            # The approving server rewrites the file it serves and serves the result.
            return policy_change.apply_approved(self.store, decided.id,
                                                policy_file=self.policy.file,
                                                swap=self.swap_policy,
                                                served_hash=self.policy.hash)
        return decided

    # --- admins -----------------------------------------------------------------------
    def propose_autonomy(
        self, admin: Principal, agent: str, level: str, *, pinned: bool = False,
        reason: str | None = None,
    ) -> Request:
        """An admin's level change, stored for a second admin to approve (SPEC §8)."""
        if admin.role != "admin":
            raise Forbidden("only an admin may set an agent's autonomy level", code="admins_only")
        return autonomy.propose(self.store, agent=agent, level=level, pinned=pinned,
                                reason=reason, requested_by=admin.name,
                                policy_hash=self.policy.hash)

    def _check_confirmation(self, request: Request, confirmation: str | None) -> bool:
        reqs = request.requirements
        if reqs is None or not reqs.confirm:
            return False
        phrase = self.confirmation_phrase(request)
        if (confirmation or "").strip() != phrase:
            raise Forbidden(
                f"this request needs typed confirmation: send `confirmation` equal to "
                f"`{phrase}`",
                code="confirmation_required",
            )
        return True

    def _recheck_edit(self, request: Request, args: Any) -> Requirements | None:
        """Run the policy on the edited action; stricter requirements replace the old."""
        if not isinstance(args, dict):
            raise BadInput("edited `args` must be an object")
        # the same limits as a proposal: edits come from pages, terminals and channels too
        jsonvalue.check({"args": args}, max_bytes=jsonvalue.MAX_BODY)
        edited = {**request.action, "args": args}
        for key in FILLED_FROM_ARGS:
            if key in args:
                edited[key] = args[key]
        result = self.policy.evaluate(edited, self.facts_for(edited))
        if result.decision in (Decision.DENY, Decision.SUGGEST):
            raise Forbidden(
                f"the edited arguments are refused by the policy ({result.decision.value}): "
                + "; ".join(result.reasons),
                code="edit_refused",
            )
        if result.decision is not Decision.REQUIRE_APPROVAL or result.requirements is None:
            return None
        current = request.requirements.gates if request.requirements else ()
        have = {g.source for g in current}
        extra = tuple(g for g in result.requirements.gates if g.source not in have)
        if not extra:
            return None
        return Requirements(gates=(*current, *extra))

    def delegate(
        self, request_id: str, reviewer: Principal, to: Sequence[str],
        version: int | None = None,
    ) -> Request:
        if not to or not all(isinstance(x, str) and x.strip() for x in to):
            raise BadInput("`to` must name at least one group or `user:NAME`")
        # A change to interlock itself waits for a second admin (SPEC §8): adding reviewers
        # to it would let someone who is not an admin approve it. Refused here, so the API,
        # the pages and Slack all refuse it.
        if self.store.get(request_id).agent == autonomy.INTERLOCK_AGENT:
            raise Forbidden(f"request `{request_id}` is a change to interlock itself: a second "
                            "admin approves it, and it is not delegated", code="not_delegable")
        return self.store.delegate(request_id, reviewer=reviewer.reviewer, to=list(to),
                                   version=version)

    def resolve(
        self, request_id: str, reviewer: Principal,
        status: Literal["done", "dismissed", "succeeded", "failed"], note: str | None = None,
    ) -> Request:
        return self.store.resolve(request_id, reviewer=reviewer.reviewer, status=status,
                                  note=note)

    def votes(self, request_id: str) -> list[Vote]:
        return self.store.votes(request_id)

    def decide_batch(
        self,
        batch_id: str,
        reviewer: Principal,
        verdict: Literal["approve_all", "reject_all", "each"],
        *,
        items: Mapping[str, str] | None = None,
        note: str | None = None,
        confirmation: str | None = None,
        agent: str | None = None,
    ) -> BatchOutcome:
        """One vote on every pending item of a batch the reviewer may decide, in one
        transaction; items needing a confirmation phrase other than the one given are
        skipped with the phrase they need."""
        if reviewer.role == "agent":
            raise Forbidden("agents do not decide requests", code="reviewers_only")
        requests = self.store.list_requests(batch_id=batch_id, agent=agent, limit=1000)
        if not requests:
            raise NotFound(f"no batch `{batch_id}`")
        agents = {r.agent for r in requests}
        if len(agents) > 1:
            raise BadInput(
                f"batch `{batch_id}` exists for several agents ({', '.join(sorted(agents))}); "
                "name one with `agent`"
            )
        if verdict == "each":
            if not isinstance(items, Mapping) or not items:
                raise BadInput("`each` needs `items`: {request id: approve|deny|request_changes}")
            wanted = {rid: str(v) for rid, v in items.items()}
        elif verdict in ("approve_all", "reject_all"):
            one = "approve" if verdict == "approve_all" else "deny"
            wanted = {r.id: one for r in requests if r.state is State.PENDING}
        else:
            raise BadInput(f"verdict must be approve_all, reject_all or each, not `{verdict}`")
        outcome = BatchOutcome()
        by_id = {r.id: r for r in requests}
        verdicts: dict[str, Verdict] = {}
        confirmed: set[str] = set()  # approvals whose typed confirmation was checked
        for rid, one in wanted.items():
            request = by_id.get(rid)
            needs = one == "approve" and request is not None and (
                request.requirements is not None and request.requirements.confirm)
            if one not in ("approve", "deny", "request_changes"):
                outcome.skipped.append({"id": rid, "reason": f"unknown verdict `{one}`"})
            elif request is None:
                outcome.skipped.append({"id": rid, "reason": f"not in batch `{batch_id}`"})
            elif needs and (confirmation or "").strip() != self.confirmation_phrase(request):
                outcome.skipped.append({
                    "id": rid,
                    "reason": "needs typed confirmation "
                              f"`{self.confirmation_phrase(request)}`",
                })
            else:
                verdicts[rid] = one  # type: ignore[assignment]
                if needs:
                    confirmed.add(rid)
        for r in requests:  # already decided items named by approve_all/reject_all
            if verdict != "each" and r.state is not State.PENDING:
                outcome.skipped.append({"id": r.id, "reason": f"it is {r.state.value}"})
        if verdicts:
            if not (note or "").strip() and any(v != "approve" for v in verdicts.values()):
                note = f"rejected with its batch `{batch_id}` by {reviewer.name}"
            done, skipped = self.store.vote_batch(
                batch_id, agent=next(iter(agents)), reviewer=reviewer.reviewer,
                verdicts=verdicts, note=note, confirmed=frozenset(confirmed),
            )
            outcome.results.extend(
                {"id": d.id, "state": d.state.value, "version": d.version} for d in done
            )
            outcome.skipped.extend({"id": rid, "reason": why} for rid, _, why in skipped)
        return outcome

    def review(
        self, request_id: str, reviewer: Principal,
        verdict: Literal["ok", "flagged", "reversed"], note: str | None = None,
    ) -> Annotation:
        """Post-execution review of a finished request (an annotation, not a state)."""
        return self.store.review(request_id, reviewer=reviewer.reviewer, verdict=verdict,
                                 note=note)

    def rate(
        self, request_id: str, reviewer: Principal,
        rating: Literal["correct", "partially_correct", "incorrect"], correction: Any = None,
        note: str | None = None,
    ) -> Annotation:
        """Feedback on how right the agent was; the correction is eval data."""
        return self.store.rate(request_id, reviewer=reviewer.reviewer, rating=rating,
                               correction=correction, note=note)

    def link(self, request_id: str) -> str:
        """The review page of a request, under `--public-url` when given."""
        return f"{self.public_url}/requests/{request_id}" if self.public_url else (
            f"/requests/{request_id}"
        )
