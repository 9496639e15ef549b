"""Policy text -> PolicyDoc, collecting every problem as `file:line:col: message` at once.

Validation walks the YAML by hand (not a schema library) so each message can name the key,
say what was expected in plain words, and point at the exact spot in the file.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Callable
from typing import Any

from interlock.errors import Diagnostic
from interlock.policy import match as matchlib
from interlock.policy.cel import compile_condition
from interlock.policy.model import (
    DEMOTION_EVENTS,
    Autonomy,
    Defaults,
    Escalation,
    Limits,
    PolicyDoc,
    Rule,
)
from interlock.policy.records import (
    Decision,
    Gate,
    Level,
    OnTimeout,
    Requirements,
    Risk,
    Stage,
)
from interlock.policy.source import Path, Source, parse_yaml, plain

TOP_KEYS = (
    "version", "defaults", "risk", "autonomy", "agents", "escalation", "redact", "limits",
    "rules", "environments",
)
RULE_KEYS = (
    "name", "match", "when", "requires", "decision", "approvers", "quorum", "timeout",
    "on_timeout", "escalate_to", "confirm", "approval_ttl", "guidance", "stages", "parallel",
    "escalation", "fail_open",
)
APPROVAL_KEYS = (
    "approvers", "quorum", "timeout", "on_timeout", "escalate_to", "confirm", "approval_ttl",
    "stages", "parallel", "guidance",
)
STAGE_KEYS = ("name", "approvers", "quorum", "timeout", "on_timeout")
MATCH_FIELDS = (
    "action", "agent", "environment", "capabilities", "recipients", "amount", "currency",
    "affected_records", "risk", "confidence", "batch_id",
)
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNIT = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@/ -]*$")
_CEL_POS_RE = re.compile(r"<input>:(\d+):(\d+):\s*(.*)")


def parse_duration(text: Any) -> float | None:
    """Seconds for `45s`, `30m`, `4h`, `2d`; None when malformed."""
    if not isinstance(text, str):
        return None
    m = _DURATION_RE.match(text)
    if m is None:
        return None
    return float(m.group(1)) * _UNIT[m.group(2)]


def load_text(text: str, file: str) -> tuple[PolicyDoc | None, list[Diagnostic]]:
    """Validate and compile; the doc is None when any error was found."""
    src = parse_yaml(text, file)
    if not src.ok:
        return None, src.diagnostics
    doc = _Loader(src).load()
    return (doc if src.ok else None), src.diagnostics


def _kind(value: Any) -> str:
    return matchlib._kind(value)


def _suggest(key: str, choices: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, choices, n=1)
    hint = f"; did you mean `{close[0]}`?" if close else ""
    return f"(expected one of: {', '.join(choices)}){hint}"


class _Loader:
    def __init__(self, src: Source) -> None:
        self.src = src
        self.risk_globs: dict[Risk, list[tuple[str, Callable[[str], bool]]]] = {
            r: [] for r in Risk
        }

    # --- helpers --------------------------------------------------------------------
    def err(self, where: Path, message: str, *, key: bool = False) -> None:
        self.src.error(where, message, key=key)

    def mapping(self, value: Any, where: Path, what: str) -> dict[Any, Any] | None:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.err(where, f"`{what}` must be a mapping, got {_kind(value)}")
            return None
        return value

    def known_keys(self, node: dict[Any, Any], where: Path, allowed: tuple[str, ...]) -> None:
        for key in node:
            if key not in allowed:
                shown = key if isinstance(key, str) else repr(key)
                self.err((*where, key), f"unknown key `{shown}` {_suggest(str(key), allowed)}",
                         key=True)

    def string(self, node: dict[Any, Any], key: str, where: Path, default: str | None = None,
               *, required: bool = False) -> str | None:
        if key not in node:
            if required:
                self.err(where, f"missing required key `{key}`", key=True)
            return default
        value = node[key]
        if not isinstance(value, str) or not value.strip():
            self.err((*where, key), f"`{key}` must be a non-empty string, got {_kind(value)}")
            return default
        return str(value)

    def boolean(self, node: dict[Any, Any], key: str, where: Path, default: bool) -> bool:
        if key not in node:
            return default
        value = node[key]
        if not isinstance(value, bool):
            self.err((*where, key), f"`{key}` must be true or false, got {_kind(value)}")
            return default
        return value

    def integer(self, node: dict[Any, Any], key: str, where: Path, default: int | None,
                minimum: int = 1) -> int | None:
        if key not in node:
            return default
        value = node[key]
        if value is None and default is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            self.err((*where, key),
                     f"`{key}` must be a whole number ≥ {minimum}, got {_show(value)}")
            return default
        return int(value)

    def number(self, node: dict[Any, Any], key: str, where: Path, default: float | None,
               lo: float, hi: float) -> float | None:
        if key not in node:
            return default
        value = node[key]
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            lo <= value <= hi
        ):
            self.err((*where, key), f"`{key}` must be a number from {lo:g} to {hi:g}, "
                     f"got {_show(value)}")
            return default
        return float(value)

    def duration(self, node: dict[Any, Any], key: str, where: Path,
                 default: float | None) -> float | None:
        if key not in node:
            return default
        seconds = parse_duration(node[key])
        if seconds is None or seconds <= 0:
            self.err((*where, key), f"`{key}` must be a duration like `45s`, `30m`, `4h` or "
                     f"`2d`, got {_show(node[key])}")
            return default
        return seconds

    def enum(self, node: dict[Any, Any], key: str, where: Path, enum: type[Any],
             default: Any, *, required: bool = False) -> Any:
        if key not in node:
            if required:
                self.err(where, f"missing required key `{key}`", key=True)
            return default
        value = node[key]
        choices = tuple(e.value for e in enum)
        if value not in choices or not isinstance(value, str):
            self.err((*where, key),
                     f"`{key}` must be one of {', '.join(choices)}, got {_show(value)}")
            return default
        return enum(value)

    def string_list(self, node: dict[Any, Any], key: str, where: Path,
                    *, allow_empty: bool = True) -> tuple[str, ...] | None:
        if key not in node:
            return None
        value = node[key]
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            self.err((*where, key), f"`{key}` must be a list of strings, got {_kind(value)}")
            return None
        out: list[str] = []
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                self.err((*where, key, i), f"`{key}` entries must be non-empty strings, "
                         f"got {_show(item)}")
            else:
                out.append(str(item))
        if not out and not allow_empty:
            self.err((*where, key), f"`{key}` must not be empty")
            return None
        return tuple(out)

    def globs(self, node: dict[Any, Any], key: str, where: Path) -> tuple[str, ...]:
        patterns = self.string_list(node, key, where) or ()
        value = node.get(key)
        for i, pattern in enumerate(patterns):
            try:
                matchlib.compile_glob(pattern)
            except matchlib.MatchSpecError as exc:
                self.err((*where, key, i) if isinstance(value, list) else (*where, key),
                         str(exc))
        return patterns

    # --- sections -------------------------------------------------------------------
    def load(self) -> PolicyDoc:
        data = self.src.data
        if data is None:
            data = {}
        if not isinstance(data, dict):
            self.err((), f"a policy must be a mapping of sections, got {_kind(data)}")
            data = {}
        self.known_keys(data, (), TOP_KEYS)
        if "version" not in data:
            self.err((), "missing required key `version` (use `version: 1`)")
        elif data["version"] != 1 or isinstance(data["version"], bool):
            self.err(("version",), f"`version` must be 1, got {_show(data['version'])}")

        defaults = self.defaults(data.get("defaults"))
        risk = self.risk(data.get("risk"))
        autonomy = self.autonomy(data["autonomy"]) if "autonomy" in data else None
        scopes = self.scopes(data.get("agents"))
        escalation = self.escalation(data.get("escalation"))
        redact = self.redact(data)
        limits = self.limits(data.get("limits"))
        environments = self.environments(data.get("environments"))
        rules = self.rules(data.get("rules"), defaults)
        text_hash = hashlib.sha256(self.src.text.encode()).hexdigest()
        scope_tests = {
            agent: _any_glob(patterns) for agent, patterns in scopes.items() if patterns
        }
        doc = PolicyDoc(
            file=self.src.file, text_hash=text_hash, defaults=defaults, risk=risk,
            autonomy=autonomy, scopes=scopes, escalation=escalation, redact=redact,
            limits=limits, rules=rules, environments=environments, scope_tests=scope_tests,
        )
        self.warnings(doc)
        return doc

    def defaults(self, raw: Any) -> Defaults:
        node = self.mapping(raw, ("defaults",), "defaults")
        if node is None:
            return Defaults()
        where: Path = ("defaults",)
        self.known_keys(node, where, ("decision", "approvers", "timeout", "on_timeout",
                                      "approval_ttl", "claim_lease"))
        base = Defaults()
        on_timeout = self.enum(node, "on_timeout", where, OnTimeout, base.on_timeout)
        if on_timeout is OnTimeout.APPROVE:
            self.err((*where, "on_timeout"), "`on_timeout: approve` is not allowed in "
                     "`defaults`: it applies only to rules whose actions are all low risk")
            on_timeout = base.on_timeout
        if on_timeout is OnTimeout.ESCALATE:
            self.err((*where, "on_timeout"), "`on_timeout: escalate` needs `escalate_to`, "
                     "which only a rule or stage has")
            on_timeout = base.on_timeout
        approvers = self.string_list(node, "approvers", where, allow_empty=False)
        return Defaults(
            decision=self.enum(node, "decision", where, Decision, base.decision),
            approvers=approvers or base.approvers,
            timeout=self.duration(node, "timeout", where, base.timeout) or base.timeout,
            on_timeout=on_timeout,
            approval_ttl=self.duration(node, "approval_ttl", where, base.approval_ttl)
            or base.approval_ttl,
            claim_lease=self.duration(node, "claim_lease", where, base.claim_lease)
            or base.claim_lease,
        )

    def risk(self, raw: Any) -> dict[str, tuple[str, ...]]:
        node = self.mapping(raw, ("risk",), "risk")
        out: dict[str, tuple[str, ...]] = {}
        if node is None:
            return out
        self.known_keys(node, ("risk",), tuple(r.value for r in Risk))
        for level in Risk:
            if level.value in node:
                patterns = self.globs(node, level.value, ("risk",))
                out[level.value] = patterns
                for p in patterns:
                    if _safe_glob(p):
                        self.risk_globs[level].append((p, matchlib.compile_glob(p)))
        return out

    def autonomy(self, raw: Any) -> Autonomy:
        where: Path = ("autonomy",)
        node = self.mapping(raw, where, "autonomy")
        if node is None:
            return Autonomy()
        self.known_keys(node, where, ("default", "agents", "max_level", "promote_after",
                                      "demote_on", "report", "sample_review"))
        base = Autonomy()
        agents: dict[str, Level] = {}
        agents_node = self.mapping(node.get("agents"), (*where, "agents"), "autonomy.agents")
        for agent, level in (agents_node or {}).items():
            if level not in tuple(lv.value for lv in Level) or not isinstance(level, str):
                self.err((*where, "agents", agent), f"autonomy level of `{agent}` must be one "
                         f"of {', '.join(lv.value for lv in Level)}, got {_show(level)}")
            else:
                agents[str(agent)] = Level(level)
        demote = self.string_list(node, "demote_on", where)
        if demote is not None:
            for i, event in enumerate(demote):
                if event not in DEMOTION_EVENTS:
                    self.err((*where, "demote_on", i), f"unknown demotion event `{event}` "
                             f"{_suggest(event, DEMOTION_EVENTS)}")
        return Autonomy(
            default=self.enum(node, "default", where, Level, base.default),
            agents=agents,
            max_level=self.enum(node, "max_level", where, Level, base.max_level),
            promote_after=self.integer(node, "promote_after", where, base.promote_after)
            or base.promote_after,
            demote_on=demote if demote is not None else base.demote_on,
            report=self.boolean(node, "report", where, base.report),
            sample_review=self.number(node, "sample_review", where, base.sample_review, 0, 1)
            or 0.0,
        )

    def scopes(self, raw: Any) -> dict[str, tuple[str, ...]]:
        node = self.mapping(raw, ("agents",), "agents")
        out: dict[str, tuple[str, ...]] = {}
        for agent, spec in (node or {}).items():
            where: Path = ("agents", agent)
            body = self.mapping(spec, where, f"agents.{agent}")
            if body is None:
                continue
            self.known_keys(body, where, ("actions",))
            if "actions" not in body:
                self.err(where, f"agent `{agent}` needs `actions`: the action globs it may "
                         "propose", key=True)
                continue
            out[str(agent)] = self.globs(body, "actions", where)
        return out

    def escalation(self, raw: Any) -> Escalation:
        where: Path = ("escalation",)
        node = self.mapping(raw, where, "escalation")
        if node is None:
            return Escalation()
        self.known_keys(node, where, ("confidence_below", "novel_action", "novel_recipient",
                                      "repeated_failures"))
        return Escalation(
            confidence_below=self.number(node, "confidence_below", where, None, 0, 1),
            novel_action=self.boolean(node, "novel_action", where, False),
            novel_recipient=self.boolean(node, "novel_recipient", where, False),
            repeated_failures=self.integer(node, "repeated_failures", where, None),
        )

    def redact(self, data: dict[Any, Any]) -> tuple[str, ...]:
        paths = self.string_list(data, "redact", ()) or ()
        for i, p in enumerate(paths):
            if any(seg == "" for seg in p.split(".")):
                self.err(("redact", i), f"redact path `{p}` has an empty segment")
        return paths

    def limits(self, raw: Any) -> Limits:
        where: Path = ("limits",)
        node = self.mapping(raw, where, "limits")
        if node is None:
            return Limits()
        self.known_keys(node, where, ("pending_per_agent", "actions_per_minute"))
        base = Limits()
        return Limits(
            pending_per_agent=self.integer(node, "pending_per_agent", where,
                                           base.pending_per_agent) or base.pending_per_agent,
            actions_per_minute=self.integer(node, "actions_per_minute", where,
                                            base.actions_per_minute) or base.actions_per_minute,
        )

    def environments(self, raw: Any) -> dict[str, Decision]:
        node = self.mapping(raw, ("environments",), "environments")
        out: dict[str, Decision] = {}
        for env, spec in (node or {}).items():
            where: Path = ("environments", env)
            body = self.mapping(spec, where, f"environments.{env}")
            if body is None:
                continue
            self.known_keys(body, where, ("default",))
            decision = self.enum(body, "default", where, Decision, None, required=True)
            if decision is not None:
                out[str(env)] = decision
        return out

    # --- rules ----------------------------------------------------------------------
    def rules(self, raw: Any, defaults: Defaults) -> tuple[Rule, ...]:
        if raw is None:
            return ()
        if not isinstance(raw, list):
            self.err(("rules",), f"`rules` must be a list of rules, got {_kind(raw)}")
            return ()
        seen: dict[str, int] = {}
        out: list[Rule] = []
        for i, spec in enumerate(raw):
            rule = self.rule(spec, i, defaults)
            if rule is None:
                continue
            if rule.name in seen:
                self.err(("rules", i, "name"), f"rule name `{rule.name}` is used twice "
                         f"(first by rule {seen[rule.name] + 1})")
            seen.setdefault(rule.name, i)
            out.append(rule)
        return tuple(out)

    def rule(self, spec: Any, i: int, defaults: Defaults) -> Rule | None:
        where: Path = ("rules", i)
        if not isinstance(spec, dict):
            self.err(where, f"a rule must be a mapping, got {_kind(spec)}")
            return None
        self.known_keys(spec, where, RULE_KEYS)
        name = self.string(spec, "name", where, required=True) or f"rule-{i + 1}"
        if "name" in spec and isinstance(spec["name"], str) and not _NAME_RE.match(name):
            self.err((*where, "name"), f"rule name `{name}` may use letters, digits, spaces "
                     "and `_ . : @ / -`")
        decision = self.enum(spec, "decision", where, Decision, None, required=True)
        line = self.src.position(where)[0]

        conditions, action_patterns = self.match(spec.get("match"), (*where, "match"))
        when = None
        if "when" in spec:
            when = self.when(spec["when"], (*where, "when"))
        requires: list[tuple[str, ...]] = []
        for j, path in enumerate(self.string_list(spec, "requires", where) or ()):
            if not self.field_path(path, (*where, "requires", j), "requires"):
                continue
            requires.append(tuple(path.split(".")))

        gate = None
        if decision is Decision.REQUIRE_APPROVAL:
            gate = self.gate(spec, where, name, defaults, action_patterns)
        elif decision is not None:
            for key in APPROVAL_KEYS:
                if key in spec:
                    self.err((*where, key), f"`{key}` only applies to rules with "
                             f"`decision: require_approval` (this rule's is `{decision.value}`)",
                             key=True)
        escalation = self.boolean(spec, "escalation", where, True)
        if "escalation" in spec and decision not in (Decision.ALLOW, None):
            self.err((*where, "escalation"), "`escalation: false` only applies to allow rules",
                     key=True)
        fail_open = self.boolean(spec, "fail_open", where, False)
        if fail_open and decision not in (Decision.ALLOW, Decision.NOTIFY, None):
            self.err((*where, "fail_open"), "`fail_open` only applies to allow and notify "
                     "rules: a gated action never runs while the gateway is unreachable",
                     key=True)
        if decision is None:
            return None
        return Rule(
            name=name, index=i, line=line, decision=decision, conditions=conditions,
            action_patterns=action_patterns, when=when, requires=tuple(requires), gate=gate,
            escalation=escalation, fail_open=fail_open,
            # not a mapping: `match` reported it already; the rule stands for later checks
            match_spec=plain(spec["match"]) if isinstance(spec.get("match"), dict) else {},
            reason=f"rule {name}",
            requirements=None if gate is None else Requirements(gates=(gate,)),
            checks=tuple(c.predicate() for c in conditions),
        )

    def field_path(self, path: str, where: Path, what: str) -> bool:
        parts = path.split(".")
        if any(p == "" for p in parts):
            self.err(where, f"`{what}` path `{path}` has an empty segment")
            return False
        if parts[0] == "args":
            if len(parts) < 2:
                self.err(where, f"`{what}` path `args` needs a field, e.g. `args.table`")
                return False
            return True
        if len(parts) == 1:
            return True
        self.err(where, f"`{what}` path `{path}`: only `args.<path>` may have dots")
        return False

    def match(self, raw: Any, where: Path
              ) -> tuple[tuple[matchlib.Condition, ...], tuple[str, ...] | None]:
        if raw is None:
            return (), None
        node = self.mapping(raw, where, "match")
        if node is None:
            return (), None
        conditions: list[matchlib.Condition] = []
        patterns: tuple[str, ...] | None = None
        for key, spec in node.items():
            if not isinstance(key, str):
                self.err((*where, key), f"match keys must be field names, got {_show(key)}",
                         key=True)
                continue
            if key not in MATCH_FIELDS and not key.startswith("args."):
                self.err((*where, key), f"unknown match field `{key}` "
                         f"{_suggest(key, (*MATCH_FIELDS, 'args.<path>'))}", key=True)
                continue
            if key.startswith("args.") and not self.field_path(key, (*where, key), "match"):
                continue
            value = plain(spec)
            try:
                cond = matchlib.compile_condition(tuple(key.split(".")), value)
            except matchlib.MatchSpecError as exc:
                self.err((*where, key), f"match `{key}`: {exc}")
                continue
            if key == "action" and _indexable(value):
                patterns = (value,) if isinstance(value, str) else tuple(value)
                continue
            conditions.append(cond)
        return tuple(conditions), patterns

    def when(self, raw: Any, where: Path) -> Any:
        if not isinstance(raw, str) or not raw.strip():
            self.err(where, f"`when` must be a CEL expression string, got {_kind(raw)}")
            return None
        try:
            return compile_condition(str(raw))
        except ValueError as exc:
            line, col = self.src.position(where)
            text = str(exc)
            m = _CEL_POS_RE.search(text)
            message = text.splitlines()[0] if text else "does not compile"
            if m is not None:
                message = m.group(3)
                line, col = self.cel_position(line, col, int(m.group(1)), int(m.group(2)))
            self.src.diagnostics.append(Diagnostic(
                file=self.src.file, line=line, col=col,
                message=f"`when` is not valid CEL: {_lower_first(message)}"))
            return None
        except Exception as exc:  # the library may raise other errors for odd input
            self.err(where, f"`when` is not valid CEL: {exc}")
            return None

    def cel_position(self, line: int, col: int, cel_line: int, cel_col: int) -> tuple[int, int]:
        """File position of CEL's (line, col) inside a `when` value starting at (line, col)."""
        lines = self.src.text.splitlines()
        raw = lines[line - 1] if 0 < line <= len(lines) else ""
        head = raw[col - 1:].strip()
        if head[:1] in ("|", ">"):  # a block scalar: content starts on the next line
            target = line + cel_line
            text = lines[target - 1] if 0 < target <= len(lines) else ""
            first = next((ln for ln in lines[line:] if ln.strip()), "")
            indent = len(first) - len(first.lstrip())
            return target, indent + cel_col
        if cel_line == 1:
            quoted = col - 1 < len(raw) and raw[col - 1] in "'\""
            return line, col + cel_col - 1 + (1 if quoted else 0)
        target = line + cel_line - 1
        text = lines[target - 1] if 0 < target <= len(lines) else ""
        return target, len(text) - len(text.lstrip()) + cel_col

    def gate(self, spec: dict[Any, Any], where: Path, name: str, defaults: Defaults,
             action_patterns: tuple[str, ...] | None) -> Gate:
        timeout = self.duration(spec, "timeout", where, defaults.timeout) or defaults.timeout
        ttl = self.duration(spec, "approval_ttl", where, defaults.approval_ttl)
        on_timeout = self.enum(spec, "on_timeout", where, OnTimeout, defaults.on_timeout)
        escalate_to = self.string_list(spec, "escalate_to", where) or ()
        if on_timeout is OnTimeout.ESCALATE and not escalate_to:
            self.err((*where, "on_timeout"), "`on_timeout: escalate` needs `escalate_to`: "
                     "the approvers to add when the timeout passes")
        if on_timeout is OnTimeout.APPROVE:
            self.check_auto_approve(action_patterns, (*where, "on_timeout"), name)
        confirm = False
        if "confirm" in spec:
            value = spec["confirm"]
            if isinstance(value, str) and value == "typed":
                confirm = True
            elif not (value is False or (isinstance(value, str) and value == "none")):
                self.err((*where, "confirm"), f"`confirm` must be `typed` or `none`, "
                         f"got {_show(value)}")
        parallel = self.boolean(spec, "parallel", where, False)
        stages: list[Stage] = []
        if "stages" in spec:
            if "approvers" in spec or "quorum" in spec:
                self.err((*where, "stages"), "give either `stages` or `approvers`/`quorum`, "
                         "not both", key=True)
            raw = spec["stages"]
            if not isinstance(raw, list) or not raw:
                self.err((*where, "stages"), f"`stages` must be a non-empty list, "
                         f"got {_kind(raw)}")
            else:
                names: set[str] = set()
                for j, st in enumerate(raw):
                    stage = self.stage(st, (*where, "stages", j), j, action_patterns, name)
                    if stage is not None:
                        if stage.name in names:
                            self.err((*where, "stages", j, "name"),
                                     f"stage name `{stage.name}` is used twice")
                        names.add(stage.name)
                        stages.append(stage)
        else:
            if "parallel" in spec:
                self.err((*where, "parallel"), "`parallel` only applies with `stages`",
                         key=True)
            approvers = self.string_list(spec, "approvers", where, allow_empty=False)
            quorum = self.integer(spec, "quorum", where, 1) or 1
            stages.append(Stage(name="approval", approvers=approvers or defaults.approvers,
                                quorum=quorum))
            self.check_quorum(stages[-1], (*where, "quorum" if "quorum" in spec else "name"))
        guidance = self.string(spec, "guidance", where)
        return Gate(
            source=name, stages=tuple(stages), parallel=parallel, timeout=timeout,
            on_timeout=on_timeout, escalate_to=escalate_to, confirm=confirm,
            approval_ttl=ttl or defaults.approval_ttl, guidance=guidance,
        )

    def stage(self, raw: Any, where: Path, j: int, action_patterns: tuple[str, ...] | None,
              rule: str) -> Stage | None:
        if not isinstance(raw, dict):
            self.err(where, f"a stage must be a mapping, got {_kind(raw)}")
            return None
        self.known_keys(raw, where, STAGE_KEYS)
        name = self.string(raw, "name", where) or f"stage-{j + 1}"
        approvers = self.string_list(raw, "approvers", where, allow_empty=False)
        if "approvers" not in raw:
            self.err(where, f"stage `{name}` has no `approvers`", key=True)
        on_timeout = self.enum(raw, "on_timeout", where, OnTimeout, None)
        if on_timeout is OnTimeout.APPROVE:
            self.check_auto_approve(action_patterns, (*where, "on_timeout"), rule)
        if on_timeout is OnTimeout.ESCALATE:
            self.err((*where, "on_timeout"), "a stage cannot escalate on its own: set "
                     "`on_timeout: escalate` and `escalate_to` on the rule")
            on_timeout = None
        stage = Stage(
            name=name, approvers=approvers or (), quorum=self.integer(raw, "quorum", where, 1)
            or 1, timeout=self.duration(raw, "timeout", where, None), on_timeout=on_timeout,
        )
        if approvers:
            self.check_quorum(stage, (*where, "quorum" if "quorum" in raw else "name"))
        return stage

    def check_quorum(self, stage: Stage, where: Path) -> None:
        if stage.approvers and all(a.startswith("user:") for a in stage.approvers):
            people = len(set(stage.approvers))
            if stage.quorum > people:
                self.src.warning(where, f"quorum {stage.quorum} can never be reached: stage "
                                 f"`{stage.name}` names only {people} reviewer(s)")

    def check_auto_approve(self, patterns: tuple[str, ...] | None, where: Path,
                           rule: str) -> None:
        problem = self.not_all_low(patterns)
        if problem:
            self.err(where, f"`on_timeout: approve` on rule `{rule}` needs every action it "
                     f"can match to be low risk: {problem}")

    def not_all_low(self, patterns: tuple[str, ...] | None) -> str | None:
        if not patterns:
            return "the rule does not limit `match.action`"
        low = [p for p, _ in self.risk_globs[Risk.LOW]]
        for pattern in patterns:
            higher = [p for r in (Risk.HIGH, Risk.MEDIUM) for p, _ in self.risk_globs[r]
                      if _globs_intersect(pattern, p)]
            if higher:
                return f"`{pattern}` may be `{higher[0]}`, which is not low risk"
            if matchlib.is_glob(pattern):
                if pattern not in low:
                    return f"`{pattern}` is a glob that is not one of the low-risk globs"
            elif not any(test(pattern) for _, test in self.risk_globs[Risk.LOW]):
                return f"`{pattern}` is not classified low risk"
        return None

    # --- warnings ---------------------------------------------------------------------
    def warnings(self, doc: PolicyDoc) -> None:
        # Only rules without `when`/`requires` always match; compare each rule with those
        # stricter ones whose match keys are a subset of its own (cheap checks first).
        always = [
            (r, r.decision.rank, frozenset(r.match_spec))
            for r in doc.rules if r.when is None and not r.requires
        ]
        for rule in doc.rules:
            keys = frozenset(rule.match_spec)
            rank = rule.decision.rank
            for other, other_rank, other_keys in always:
                if other_rank <= rank or other is rule or not other_keys <= keys:
                    continue
                if _always_matches_with(other, rule):
                    self.src.warning(("rules", rule.index), f"rule `{rule.name}` is shadowed "
                                     f"by the stricter rule `{other.name}` "
                                     f"(`{other.decision.value}`), which always matches too")
                    break


def _always_matches_with(strict: Rule, rule: Rule) -> bool:
    """True when `strict` matches whenever `rule` does (conservatively: same or fewer keys)."""
    if strict.when is not None or strict.requires:
        return False
    if strict.action_patterns is not None:
        if rule.action_patterns is None:
            return False
        if not all(
            any(_glob_covers(sp, rp) for sp in strict.action_patterns)
            for rp in rule.action_patterns
        ):
            return False
    for key, value in strict.match_spec.items():
        if key == "action" and strict.action_patterns is not None:
            continue
        if rule.match_spec.get(key, _ABSENT) != value:
            return False
    return True


_ABSENT = object()


def _glob_covers(general: str, specific: str) -> bool:
    if general == specific:
        return True
    if matchlib.is_glob(specific):
        return general == "*"
    return matchlib.compile_glob(general)(specific)


def _indexable(value: Any) -> bool:
    if isinstance(value, str):
        return True
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)


def _any_glob(patterns: tuple[str, ...]) -> Callable[[str], bool]:
    tests = [matchlib.compile_glob(p) for p in patterns if _safe_glob(p)]
    return lambda name: any(t(name) for t in tests)


def _safe_glob(p: str) -> bool:
    try:
        matchlib.compile_glob(p)
    except matchlib.MatchSpecError:
        return False
    return True


def _globs_intersect(a: str, b: str) -> bool:
    """Whether some string matches both globs (`[...]` treated as any one character)."""
    a_tokens, b_tokens = _glob_tokens(a), _glob_tokens(b)
    seen: set[tuple[int, int]] = set()
    stack = [(0, 0)]
    while stack:
        i, j = stack.pop()
        if (i, j) in seen:
            continue
        seen.add((i, j))
        if i == len(a_tokens) and j == len(b_tokens):
            return True
        ta = a_tokens[i] if i < len(a_tokens) else None
        tb = b_tokens[j] if j < len(b_tokens) else None
        if ta == "*":
            stack.append((i + 1, j))
            if tb is not None and tb != "*":
                stack.append((i, j + 1))
        if tb == "*":
            stack.append((i, j + 1))
            if ta is not None and ta != "*":
                stack.append((i + 1, j))
        if ta is not None and tb is not None and ta != "*" and tb != "*" and (
            ta == "?" or tb == "?" or ta == tb
        ):
            stack.append((i + 1, j + 1))
    return False


def _glob_tokens(pattern: str) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "[":
            end = pattern.find("]", i + 1)
            if end != -1:
                out.append("?")
                i = end + 1
                continue
        out.append(ch)
        i += 1
    return out


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f"`{value}`"
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, (int, float)):
        return f"`{value}`"
    return _kind(value)


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text else text
