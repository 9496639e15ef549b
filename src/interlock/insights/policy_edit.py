"""Suggested policy changes: edits of the policy file's YAML that keep its comments and layout,
checked by loading the result, and shown as a unified diff.

Round-trip YAML (ruamel) rewrites only what changes; the indentation style is taken from the
file itself, so the diff shows the change and nothing else. A change is also plain data
(`AddRule`, `RuleToAllow`, `ScopeAgent`, tagged by `op`), so it can wait for a second admin's
approval and be made again, identically, against the same file.
"""

from __future__ import annotations

import difflib
import io
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from interlock.errors import BadInput, PolicyError
from interlock.policy import load_policy_text

#: Keys that only a require_approval rule carries; dropped when a rule becomes an allow rule.
GATE_KEYS = ("approvers", "quorum", "stages", "parallel", "timeout", "on_timeout",
             "escalate_to", "confirm", "approval_ttl", "guidance")
_STYLES = ((2, 4, 2), (2, 2, 0), (4, 6, 4), (4, 4, 0))

Edit = Callable[[CommentedMap], None]


def _yaml(style: tuple[int, int, int]) -> YAML:
    y = YAML()
    y.preserve_quotes = True
    y.width = 4096
    y.indent(mapping=style[0], sequence=style[1], offset=style[2])
    return y


def _dump(y: YAML, doc: Any) -> str:
    out = io.StringIO()
    y.dump(doc, out)
    return out.getvalue()


def _style_of(text: str) -> tuple[int, int, int]:
    """The indentation whose unchanged round trip differs least from the file."""
    best, best_diff = _STYLES[0], -1
    for style in _STYLES:
        y = _yaml(style)
        redone = _dump(y, y.load(text)).splitlines()
        diff = sum(1 for line in difflib.ndiff(text.splitlines(), redone) if line[:1] in "+-")
        if best_diff < 0 or diff < best_diff:
            best, best_diff = style, diff
        if diff == 0:
            break
    return best


def edit(text: str, change: Edit) -> str:
    """The policy text with `change` applied to its document."""
    y = _yaml(_style_of(text))
    doc = y.load(text)
    if not isinstance(doc, CommentedMap):
        raise PolicyError([])
    change(doc)
    return _dump(y, doc)


def unified_diff(old: str, new: str, name: str = "interlock.yaml") -> str:
    """`diff -u` of two policy texts."""
    return "".join(difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True),
        fromfile=f"a/{name}", tofile=f"b/{name}",
    ))


def valid(text: str) -> bool:
    """Whether the text loads as a policy without errors."""
    try:
        load_policy_text(text)
    except PolicyError:
        return False
    return True


def slug(*parts: str) -> str:
    """A rule name from action and agent names."""
    return re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-") or "rule"


def _flow(data: dict[str, Any]) -> CommentedMap:
    m = CommentedMap(data)
    m.fa.set_flow_style()
    return m


def _rules(doc: CommentedMap) -> CommentedSeq:
    rules = doc.get("rules")
    if rules is None:
        rules = doc["rules"] = CommentedSeq()
    if not isinstance(rules, CommentedSeq):
        raise PolicyError([])
    return rules


def _unique(doc: CommentedMap, name: str) -> str:
    taken = {r.get("name") for r in _rules(doc) if isinstance(r, dict)}
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}-{n}", n + 1
    return candidate


def add_rule(name: str, match: dict[str, Any], decision: str) -> Edit:
    """Append a rule `{name, match, decision}` to `rules`."""
    def change(doc: CommentedMap) -> None:
        rule = CommentedMap()
        rule["name"] = _unique(doc, name)
        rule["match"] = _flow(match)
        rule["decision"] = decision
        _rules(doc).append(rule)
    return change


def rule_to_allow(rule_name: str) -> Edit:
    """Turn a rule into an allowlist entry (`decision: allow`, its gate keys dropped)."""
    def change(doc: CommentedMap) -> None:
        for rule in _rules(doc):
            if isinstance(rule, dict) and rule.get("name") == rule_name:
                for key in GATE_KEYS:
                    rule.pop(key, None)
                rule["decision"] = "allow"
                return
        raise PolicyError([])
    return change


def scope_agent(agent: str, actions: list[str]) -> Edit:
    """Set `agents.<agent>.actions`: what the agent may propose (anything else is denied)."""
    def change(doc: CommentedMap) -> None:
        agents = doc.get("agents")
        if agents is None:
            agents = doc["agents"] = CommentedMap()
        entry = agents.get(agent)
        if not isinstance(entry, dict):
            entry = agents[agent] = CommentedMap()
        seq = CommentedSeq(actions)
        seq.fa.set_flow_style()
        entry["actions"] = seq
        if isinstance(entry, CommentedMap):
            entry.fa.set_flow_style()
    return change


def agent_scope(text: str, agent: str) -> list[str] | None:
    """The agent's configured scope (its allowed action globs), None when unscoped."""
    y = _yaml(_STYLES[0])
    doc = y.load(text)
    agents = doc.get("agents") if isinstance(doc, dict) else None
    entry = agents.get(agent) if isinstance(agents, dict) else None
    actions = entry.get("actions") if isinstance(entry, dict) else None
    return [str(a) for a in actions] if isinstance(actions, list) else None


def rule_actions(text: str, rule_name: str) -> list[str] | None:
    """The `match.action` names of a rule as a list (None: the rule matches any action)."""
    y = _yaml(_STYLES[0])
    doc = y.load(text)
    rules = doc.get("rules") if isinstance(doc, dict) else None
    for rule in rules if isinstance(rules, list) else ():
        if isinstance(rule, dict) and rule.get("name") == rule_name:
            match = rule.get("match")
            action = match.get("action") if isinstance(match, dict) else None
            if isinstance(action, str):
                return [action]
            if isinstance(action, list):
                return [str(a) for a in action]
            return None
    return None


def suggest(text: str, change: Edit, name: str = "interlock.yaml") -> str | None:
    """The diff of a change, or None when the change cannot be made or would not load."""
    try:
        new = edit(text, change)
    except (PolicyError, ValueError, KeyError, TypeError):
        return None
    if new == text or not valid(new):
        return None
    return unified_diff(text, new, name)


def read_source(path: str | None) -> str | None:
    """The policy file's text, or None when there is no readable file behind the policy."""
    if not path or path.startswith("<"):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        return None


@dataclass(frozen=True, kw_only=True)
class AddRule:
    """Append a rule to `rules` (its name made unique among the file's rules)."""

    op: Literal["add_rule"] = "add_rule"
    """Tag."""
    name: str
    """The new rule's name."""
    match: dict[str, Any] = field(default_factory=dict)
    """Its `match` block, written in flow style."""
    decision: Literal["allow", "require_approval"]
    """Its decision."""

    def edit(self) -> Edit:
        return add_rule(self.name, self.match, self.decision)


@dataclass(frozen=True, kw_only=True)
class RuleToAllow:
    """Turn a rule into an allow rule, dropping its gate keys."""

    op: Literal["rule_to_allow"] = "rule_to_allow"
    """Tag."""
    rule: str
    """The rule's name."""

    def edit(self) -> Edit:
        return rule_to_allow(self.rule)


@dataclass(frozen=True, kw_only=True)
class ScopeAgent:
    """Set what an agent may propose: `agents.<agent>.actions`."""

    op: Literal["scope_agent"] = "scope_agent"
    """Tag."""
    agent: str
    """The agent's name."""
    actions: tuple[str, ...]
    """The action globs it keeps."""

    def edit(self) -> Edit:
        return scope_agent(self.agent, list(self.actions))


Change = AddRule | RuleToAllow | ScopeAgent


def edits(changes: Sequence[Change]) -> Edit:
    """One edit making every change in order."""
    made = [c.edit() for c in changes]

    def change(doc: CommentedMap) -> None:
        for e in made:
            e(doc)
    return change


def change_from_json(data: Any) -> Change:
    """A change read back from JSON (a stored request's args); BadInput when malformed."""
    if not isinstance(data, Mapping):
        raise BadInput("a policy change must be an object")
    op = data.get("op")
    try:
        if op == "add_rule" and data.get("decision") in ("allow", "require_approval"):
            match = data["match"]
            if not isinstance(match, Mapping):
                raise TypeError
            return AddRule(name=str(data["name"]), match=dict(match),
                           decision=data["decision"])
        if op == "rule_to_allow":
            return RuleToAllow(rule=str(data["rule"]))
        if op == "scope_agent" and isinstance(data.get("actions"), list | tuple):
            return ScopeAgent(agent=str(data["agent"]),
                              actions=tuple(str(a) for a in data["actions"]))
    except (KeyError, TypeError):
        pass
    raise BadInput(f"not a policy change this version can make: `{op}`")
