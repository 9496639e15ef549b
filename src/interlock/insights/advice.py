"""Gate-tuning advice: which gates to loosen, which to tighten, and whose approvals say nothing.

Each item states the threshold it crossed, the figures that crossed it, and where the policy
can express the fix, the change as a unified diff of the policy file (checked to load) and as
data (`changes`), under an id that names the policy hash it was computed against.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from interlock.insights import policy_edit as pe
from interlock.insights.figures import (
    FAST_APPROVAL_SECONDS,
    Figures,
    Insights,
    grouped,
    keys_of,
)
from interlock.insights.history import Item
from interlock.policy.match import is_glob
from interlock.store.autonomy import INTERLOCK_AGENT

#: Allowlist candidate: at least this share of decided requests approved untouched ...
ALLOWLIST_UNTOUCHED = 0.98
#: ... over at least this many decided requests.
ALLOWLIST_MIN = 50
#: Too eager: at least this share of an agent's requests for one action denied ...
DENIAL_RATE = 0.30
#: ... over at least this many decided requests.
DENIAL_MIN = 10
#: Rubber-stamping: more than this share of a reviewer's approvals under FAST_APPROVAL_SECONDS ...
RUBBER_SHARE = 0.5
#: ... over at least this many approvals.
RUBBER_MIN = 10
#: Tighten: at least this share of reviewed unattended actions flagged or reversed ...
MISS_RATE = 0.10
#: ... over at least this many reviewed unattended actions.
MISS_MIN = 5

Kind = Literal["allowlist", "tighten_scope", "rubber_stamping", "tighten_gate"]


@dataclass(frozen=True, kw_only=True)
class Advice:
    """One gate-tuning suggestion with its evidence."""

    id: str
    """`<kind>-<subject>@<first 12 of policy_hash>`: what `insights apply` takes; a policy
    file that changed since makes it stale."""
    kind: Kind
    """allowlist / tighten_scope / rubber_stamping / tighten_gate."""
    subject: str
    """What it is about, e.g. `action send_email`, `reviewer alice`."""
    title: str
    """One line."""
    detail: str
    """What the figures say and what the change does, in plain words."""
    threshold: str
    """The stated threshold that was crossed."""
    evidence: dict[str, Any]
    """The figures behind it."""
    diff: str | None
    """The suggested policy change as a unified diff; None where the policy cannot say it."""
    loosens: bool
    """Whether applying it lets more run without people (needs a second admin's approval)."""
    changes: tuple[pe.Change, ...] = ()
    """The change as data, made in order (empty where `diff` is None)."""
    policy_hash: str | None = None
    """sha256 of the policy text the diff was computed against (None: no file at hand)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:.1f}%"


def _evidence(f: Figures, *names: str) -> dict[str, Any]:
    data = f.to_json()
    return {n: data[n] for n in ("requests", *names)}


def _exact(name: str) -> str | dict[str, str]:
    """A match value for exactly this name: a name with glob characters in it (which an agent
    may choose) would match more than itself as a plain string."""
    return {"eq": name} if is_glob(name) else name


def _made(text: str | None, changes: list[pe.Change], name: str
          ) -> tuple[str | None, tuple[pe.Change, ...]]:
    """The diff of the changes and the changes, or (None, ()) when they cannot be made."""
    if text is None or not changes:
        return None, ()
    diff = pe.suggest(text, pe.edits(changes), name)
    return (diff, tuple(changes)) if diff is not None else (None, ())


def _allowlist(f: Figures, members: Sequence[Item], text: str | None, name: str) -> Advice:
    gated = [it for it in members if it.decision.value == "require_approval"]
    rules = sorted({r for it in gated for r in it.rules})
    baseline = any(not it.rules for it in gated)
    agents = sorted({it.agent for it in gated})
    changes: list[pe.Change] = []
    blocked: list[str] = []
    if text is not None:
        for rule in rules:
            # A rule whose match names a glob gates every action the glob matches.
            if not is_glob(f.key) and pe.rule_actions(text, rule) == [f.key]:
                changes.append(pe.RuleToAllow(rule=rule))
            else:
                blocked.append(rule)
        if baseline or not rules:
            match: dict[str, Any] = {"action": _exact(f.key)}
            if len(agents) == 1:
                match["agent"] = _exact(agents[0])
            changes.append(pe.AddRule(name=pe.slug("allowlist", f.key), match=match,
                                      decision="allow"))
    diff, made = _made(text, [] if blocked else changes, name)
    how = ("turn " + ", ".join(f"`{r}`" for r in rules) + " into an allow rule"
           if rules and not baseline else "add an allow rule for it")
    detail = (f"People approved {f.untouched} of {f.decided} decided `{f.key}` requests "
              f"without an edit or a note ({_pct(f.untouched_rate)}); the gate adds delay "
              f"and teaches nothing. Candidate for the allowlist: {how}.")
    if blocked:
        detail += (" " + ", ".join(f"`{r}`" for r in blocked) + " also gates other actions: "
                   "split it before allowing this one.")
    return Advice(
        id="", kind="allowlist", subject=f"action {f.key}",
        title=f"`{f.key}` is approved untouched {_pct(f.untouched_rate)} of the time",
        detail=detail,
        threshold=f">= {ALLOWLIST_UNTOUCHED:.0%} untouched approvals over >= "
                  f"{ALLOWLIST_MIN} decided requests",
        evidence={**_evidence(f, "decided", "approved", "untouched", "untouched_rate",
                              "edit_rate", "denial_rate", "median_seconds"),
                  "rules": rules, "agents": agents},
        diff=diff, loosens=True, changes=made,
    )


def _too_eager(f: Figures, agent: str, action: str, proposed: list[str], text: str | None,
               name: str) -> Advice:
    changes: list[pe.Change] = []
    scope_note = ""
    if text is not None:
        scope = pe.agent_scope(text, agent)
        if scope is not None:
            narrowed = [a for a in scope if a != action]
            if len(narrowed) < len(scope) and narrowed:
                changes.append(pe.ScopeAgent(agent=agent, actions=tuple(narrowed)))
            else:
                scope_note = (f" `{agent}`'s scope reaches `{action}` through a glob; narrow "
                              "the glob.")
        else:
            # Scope entries are globs: a proposed name with glob characters would widen it.
            narrowed = sorted(a for a in proposed if a != action and not is_glob(a))
            if narrowed:
                changes.append(pe.ScopeAgent(agent=agent, actions=tuple(narrowed)))
    diff, made = _made(text, changes, name)
    return Advice(
        id="", kind="tighten_scope", subject=f"agent {agent}, action {action}",
        title=f"`{agent}` proposes `{action}` too eagerly: {_pct(f.denial_rate)} denied",
        detail=(f"Reviewers denied {f.denied} of {f.decided} decided `{action}` requests from "
                f"`{agent}`. Tighten its scope (the diff stops it proposing `{action}`), or "
                f"narrow its instructions so it proposes `{action}` only when needed."
                + scope_note),
        threshold=f">= {DENIAL_RATE:.0%} denials over >= {DENIAL_MIN} decided requests",
        evidence={**_evidence(f, "decided", "denied", "denial_rate", "approval_rate"),
                  "agent": agent, "action": action},
        diff=diff, loosens=False, changes=made,
    )


def _tighten(f: Figures, members: Sequence[Item], text: str | None, name: str) -> Advice:
    allow_rules = sorted({r for it in members if it.outcome in ("allowed", "notified")
                          for r in it.rules})
    diff, made = _made(text, [pe.AddRule(name=pe.slug("review", f.key),
                                         match={"action": _exact(f.key)},
                                         decision="require_approval")], name)
    bad = f.missed
    return Advice(
        id="", kind="tighten_gate", subject=f"action {f.key}",
        title=f"`{f.key}` runs unattended and reviews flag {_pct(f.miss_rate)} of it",
        detail=(f"Of {f.unattended_reviewed} reviewed `{f.key}` actions that ran without "
                f"waiting, {bad} were flagged or reversed afterwards. Add a require_approval "
                "rule so a person sees it first (an allow rule never overrides it)."),
        threshold=f">= {MISS_RATE:.0%} of reviewed unattended actions flagged or reversed, "
                  f"over >= {MISS_MIN} reviewed",
        evidence={**_evidence(f, "unattended", "unattended_reviewed", "missed", "miss_rate",
                              "reversed", "reversal_rate"), "allow_rules": allow_rules},
        diff=diff, loosens=False, changes=made,
    )


def advise(insights: Insights, policy_text: str | None = None,
           policy_name: str = "interlock.yaml") -> list[Advice]:
    """Every advice item the window's figures call for, loosening first."""
    # interlock's own gated changes are not the policy's to tune.
    items = [it for it in insights.items if it.agent != INTERLOCK_AGENT]
    by_action: dict[str, list[Item]] = {}
    for it in items:
        by_action.setdefault(it.action, []).append(it)
    out: list[Advice] = []
    for f in grouped(items, keys_of("action")):
        members = by_action[f.key]
        if f.decided >= ALLOWLIST_MIN and (f.untouched_rate or 0) >= ALLOWLIST_UNTOUCHED:
            out.append(_allowlist(f, members, policy_text, policy_name))
        if f.unattended_reviewed >= MISS_MIN and (f.miss_rate or 0) >= MISS_RATE:
            out.append(_tighten(f, members, policy_text, policy_name))
    proposed: dict[str, set[str]] = {}
    for it in items:
        proposed.setdefault(it.agent, set()).add(it.action)
    for f in grouped(items, lambda it: (f"{it.agent}\x00{it.action}",)):
        agent, action = f.key.split("\x00", 1)
        if f.decided >= DENIAL_MIN and (f.denial_rate or 0) >= DENIAL_RATE:
            shown = Figures(**{**f.to_json(), "key": f"{agent}/{action}"})
            out.append(_too_eager(shown, agent, action, sorted(proposed[agent]),
                                  policy_text, policy_name))
    for r in insights.reviewers:
        if r.approvals >= RUBBER_MIN and (r.fast_share or 0) > RUBBER_SHARE:
            out.append(Advice(
                id="", kind="rubber_stamping", subject=f"reviewer {r.reviewer}",
                title=f"`{r.reviewer}` approves in under {FAST_APPROVAL_SECONDS:g} s "
                      f"{_pct(r.fast_share)} of the time",
                detail=(f"{r.fast_approvals} of {r.approvals} approvals by `{r.reviewer}` came "
                        f"less than {FAST_APPROVAL_SECONDS:g} s after the request arrived: too "
                        "fast to read it. Over-gating breeds this; loosen the gates that are "
                        "always approved (see the allowlist advice) so the rest get attention."),
                threshold=f"more than {RUBBER_SHARE:.0%} of approvals under "
                          f"{FAST_APPROVAL_SECONDS:g} s, over >= {RUBBER_MIN} approvals",
                evidence=r.to_json(), diff=None, loosens=False,
            ))
    order = {"allowlist": 0, "rubber_stamping": 1, "tighten_scope": 2, "tighten_gate": 3}
    policy_hash = text_hash(policy_text) if policy_text is not None else None
    return _named(sorted(out, key=lambda a: order[a.kind]), policy_hash)


def text_hash(text: str) -> str:
    """The policy hash of a policy text (what `Policy.hash` is for the same text)."""
    return hashlib.sha256(text.encode()).hexdigest()


def _named(items: list[Advice], policy_hash: str | None) -> list[Advice]:
    """Each item with its id and the hash its diff was computed against."""
    base = [re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{a.kind}-{a.subject}").strip("-")
            for a in items]
    seen = Counter(base)
    out = []
    for a, b in zip(items, base, strict=True):
        if seen[b] > 1:  # subjects that differ only in characters an id cannot carry
            b += "-" + hashlib.sha256(a.subject.encode()).hexdigest()[:6]
        at = f"@{policy_hash[:12]}" if policy_hash is not None else ""
        out.append(replace(a, id=b + at, policy_hash=policy_hash))
    return out


def payload(insights: Insights, policy_file: str | None) -> dict[str, Any]:
    """What `/v1/insights` answers: the figures and the advice, with diffs of the policy file."""
    text = pe.read_source(policy_file)
    name = os.path.basename(policy_file) if text is not None and policy_file else "interlock.yaml"
    return {**insights.to_json(), "policy_file": name if text is not None else None,
            "advice": [a.to_json() for a in advise(insights, text, name)]}
