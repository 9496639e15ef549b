"""The bench's policies and actions: the SPEC example, generated 50- and 1,000-rule policies,
and seeded streams of varied actions for each.

`python -m bench.policies.generate DIR` writes every policy as YAML and as Cedar for reading.
"""

from __future__ import annotations

import io
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

HERE = Path(__file__).parent
SPEC_EXAMPLE = HERE / "spec_example.yaml"

# Verbs and objects never contain one another, so no action name falls in two risk classes.
LOW_VERBS = ("get", "list", "read")
MEDIUM_VERBS = ("write", "update")
HIGH_VERBS = ("delete", "drop")
OTHER_VERBS = ("create", "run", "export", "send")
VERBS = LOW_VERBS + MEDIUM_VERBS + HIGH_VERBS + OTHER_VERBS
OBJECTS = ("user", "order", "report", "table", "job", "file", "invoice", "secret")

GENERATED_RISK = {
    "high": ["*.delete*", "*.drop*", "deploy", "send_wire"],
    "medium": ["*.write*", "*.update*", "rollback"],
    "low": ["*.get*", "*.list*", "*.read*", "search_*"],
}
TOP_LEVEL_ACTIONS = ("deploy", "rollback", "send_wire", "search_docs", "send_email", "refund")


@dataclass(kw_only=True)
class Universe:
    """What varied actions are drawn from, so they hit and miss every rule of a policy."""

    actions: list[str]
    """Every action name to cover (each appears at least once when n allows)."""
    agents: list[str]
    environments: list[str]
    capabilities: list[str]
    recipients: list[str] = field(default_factory=lambda: [
        "ops@example.com", "ceo@example.com", "customer@acme.test", "list@partner.test"])
    amounts: list[float] = field(default_factory=list)
    """Limits some rule compares with; actions take values on, just above and below them."""
    records: list[int] = field(default_factory=list)
    confidences: list[float] = field(default_factory=list)
    scoped: tuple[str, ...] = ()
    """Agents with an action scope; drawn less often, or most of their actions are denied."""
    nulls: bool = False
    """Also send `amount: null` (only where every reading of SPEC §2-§3 agrees on it)."""


def _svc_action(rng: random.Random, services: int, verbs: tuple[str, ...] = VERBS) -> str:
    return f"svc{rng.randrange(services)}.{rng.choice(verbs)}_{rng.choice(OBJECTS)}"


# --- the SPEC example ----------------------------------------------------------------------

SPEC_UNIVERSE = Universe(
    actions=[
        "deploy", "scale", "delete", "iam.create_user", "iam.attach_policy", "iam.delete_role",
        "read_only_query", "invoice.create", "invoice.send", "invoice.delete", "refund",
        "read_customer", "deploy_production", "deploy_staging", "send_payment",
        "send_external_email", "run_command", "db.delete_rows", "db.write_row", "db.get_row",
        "crm.list_contacts", "search_docs", "summarize", "restart_service",
    ],
    agents=["ops-agent", "billing-bot", "support-agent", "deploy-bot"],
    scoped=("billing-bot",),
    environments=["production", "staging", "dev"],
    capabilities=["payment", "email", "pii", "shell"],
    amounts=[10000, 50, 250000],
    records=[1000, 10, 50000],
    confidences=[0.7, 0.69, 0.95, 0.2],
    nulls=True,
)


def load_yaml(text: str) -> dict[str, Any]:
    data = YAML(typ="safe", pure=True).load(text)
    assert isinstance(data, dict)
    return data


def dump_yaml(policy: dict[str, Any]) -> str:
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = None  # leaves as flow, mappings of mappings as blocks
    # keep `name` first, as a person writes it (ruamel declares the attribute as None)
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[assignment]
    yaml.width = 4096
    buf = io.StringIO()
    yaml.dump(policy, buf)
    return buf.getvalue()


# --- the 50-rule policy ----------------------------------------------------------------------


def _header(*, autonomy: bool) -> dict[str, Any]:
    policy: dict[str, Any] = {
        "version": 1,
        "defaults": {"decision": "allow", "approvers": ["on-call"], "timeout": "1h",
                     "on_timeout": "deny"},
        "risk": {k: list(v) for k, v in GENERATED_RISK.items()},
    }
    if autonomy:
        policy["autonomy"] = {
            "default": "autonomous",
            "agents": {"ops-agent": "guided", "deploy-bot": "full_auto",
                       "intern-bot": "supervised"},
            "max_level": "full_auto",
        }
    policy["agents"] = {
        "report-bot": {"actions": ["*.get*", "*.list*", "*.read*", "search_*"]},
        "intern-bot": {"actions": ["svc0.*", "svc1.*", "search_docs"]},
    }
    policy["escalation"] = {"confidence_below": 0.5, "novel_action": True,
                            "repeated_failures": 3}
    policy["environments"] = {"production": {"default": "require_approval"},
                              "staging": {"default": "notify"}}
    return policy


def policy_50(seed: int = 50) -> dict[str, Any]:
    """A realistic 50-rule policy over 20 services, with five CEL rules."""
    rng = random.Random(seed)
    rules: list[dict[str, Any]] = []

    def add(name: str, decision: str, match: dict[str, Any] | None = None, **extra: Any) -> None:
        rule: dict[str, Any] = {"name": name}
        if match:
            rule["match"] = match
        rule.update(extra)
        rule["decision"] = decision
        rules.append(rule)

    svcs = rng.sample(range(20), 20)
    for s in svcs[:8]:
        add(f"svc{s}-deletes", "require_approval", {"action": f"svc{s}.delete*"},
            approvers=[f"team-svc{s}"])
    for s in svcs[8:13]:
        add(f"svc{s}-prod-writes", "require_approval",
            {"environment": "production", "action": [f"svc{s}.write*", f"svc{s}.update*"]})
    for s in svcs[13:18]:
        add(f"svc{s}-reads", "allow", {"action": f"svc{s}.get*"})
    for s in svcs[:3]:
        add(f"svc{s}-nonprod-lists", "allow",
            {"action": f"svc{s}.list*", "environment": {"in": ["dev", "staging"]}})
    for s in svcs[3:6]:
        add(f"svc{s}-big-exports", "require_approval",
            {"action": f"svc{s}.export*", "affected_records": {"gt": 500}})
    for s in svcs[6:9]:
        add(f"svc{s}-drops", "suggest", {"action": f"svc{s}.drop*"})
    for s in svcs[9:12]:
        add(f"svc{s}-jobs", "notify", {"action": f"svc{s}.run*"})
    add("payments-over-1000", "require_approval",
        {"capabilities": "payment", "amount": {"gte": 1000}}, quorum=1,
        approvers=["finance", "user:alice"])
    add("tiny-drops", "deny", {"action": "*.drop*", "args.rows": {"lt": 10}})
    add("forced-anything", "require_approval", {"args.force": True})
    add("intern-deletes", "deny", {"agent": "intern-bot", "action": "*.delete*"})
    add("ops-in-prod", "notify",
        {"agent": {"in": ["ops-agent", "deploy-bot"]}, "environment": "production"})
    add("not-ops-rollback", "require_approval",
        {"action": "rollback", "agent": {"ne": "ops-agent"}})
    add("sensitive-capabilities", "require_approval", {"capabilities": ["pii", "secrets"]})
    add("external-email", "notify", {"capabilities": "external_email"})
    add("prod-recipients", "notify", {"recipients": {"exists": True},
                                      "environment": {"regex": "prod.*"}})
    add("unlabelled-deploys", "require_approval",
        {"action": "deploy", "environment": {"exists": False}})
    add("wire-transfers", "require_approval", {"action": "send_wire"},
        stages=[{"name": "finance", "approvers": ["finance"], "quorum": 1},
                {"name": "security", "approvers": ["security"], "quorum": 1}])
    add("search-is-free", "allow", {"action": "search_*"})
    add("small-refunds", "allow", {"action": "refund", "amount": {"lte": 100}})
    add("refund-missing-amount", "deny", {"action": "refund", "amount": {"exists": False}})
    add("dev-anything-notify", "notify", {"environment": "dev", "agent": "deploy-bot"})
    # CEL rules (the `when` shapes bench.policies.cedar knows).
    add("large-prod-payments", "require_approval", {"capabilities": "payment"},
        when='amount > 2500 && environment == "production"', requires=["amount"])
    add("bulk-or-huge", "require_approval", None,
        when="affected_records > 1000 || amount > 50000")
    s = svcs[19]
    add(f"svc{s}-prod-creates", "require_approval", {"action": f"svc{s}.create*"},
        when='environment.startsWith("prod")')
    add("pii-exports", "deny", {"action": "*.export*"}, when='"pii" in capabilities')
    add("big-updates", "require_approval", {"action": "*.update*"}, when="args.rows > 100")
    assert len(rules) == 50, len(rules)
    policy = _header(autonomy=True)
    policy["rules"] = rules
    return policy


def _generated_universe(actions: list[str]) -> Universe:
    return Universe(
        actions=actions,
        agents=["ops-agent", "deploy-bot", "intern-bot", "report-bot", "support-agent"],
        scoped=("intern-bot", "report-bot"),
        environments=["production", "staging", "dev", "prod-eu"],
        capabilities=["payment", "pii", "secrets", "external_email", "shell"],
        amounts=[1000, 2500, 10000, 50000, 100],
        records=[100, 500, 1000, 5000],
        confidences=[0.5, 0.49, 0.9],
    )


def universe_50() -> Universe:
    names = [f"svc{s}.{v}_{o}" for s in range(20) for v in VERBS for o in OBJECTS[:2]]
    return _generated_universe([*names, *TOP_LEVEL_ACTIONS, "svc99.get_user"])


# --- the 1,000-rule policy ---------------------------------------------------------------------


def policy_1000(seed: int = 1000) -> dict[str, Any]:
    """1,000 rules over 200 services: mostly literal and glob action matches, five CEL rules."""
    rng = random.Random(seed)
    rules: list[dict[str, Any]] = []
    decision_for = {**{v: "allow" for v in LOW_VERBS}, **{v: "notify" for v in MEDIUM_VERBS},
                    **{v: "require_approval" for v in HIGH_VERBS},
                    "create": "notify", "run": "require_approval", "export": "require_approval",
                    "send": "notify"}
    cel = [
        ({"action": "svc7.create*"}, 'environment.startsWith("prod")', None),
        (None, "affected_records > 5000", None),
        ({"capabilities": "payment"}, "amount > 10000", ["amount"]),
        ({"action": "*.export*"}, '"pii" in capabilities', None),
        (None, 'action.endsWith(".drop_table")', None),
    ]
    for i, (match, when, requires) in enumerate(cel):
        rule: dict[str, Any] = {"name": f"cel-{i}"}
        if match:
            rule["match"] = match
        rule["when"] = when
        if requires:
            rule["requires"] = requires
        rule["decision"] = "require_approval" if i != 3 else "deny"
        rules.append(rule)
    while len(rules) < 1000:
        i = len(rules)
        s, verb, obj = rng.randrange(200), rng.choice(VERBS), rng.choice(OBJECTS)
        kind = rng.random()
        rule = {"name": f"r{i}-svc{s}-{verb}"}
        decision = decision_for[verb]
        if kind < 0.45:
            rule["match"] = {"action": f"svc{s}.{verb}_{obj}"}
        elif kind < 0.70:
            rule["match"] = {"action": f"svc{s}.{verb}*"}
        elif kind < 0.80:
            others = rng.sample(OBJECTS, 3)
            rule["match"] = {"action": [f"svc{s}.{verb}_{o}" for o in others]}
        elif kind < 0.90:
            rule["match"] = {"action": f"svc{s}.{verb}*",
                             "environment": rng.choice(["production", "staging"])}
            decision = "require_approval" if verb not in LOW_VERBS else "notify"
        elif kind < 0.95:
            rule["match"] = {"action": f"svc{s}.{verb}_{obj}",
                             "agent": rng.choice(["ops-agent", "deploy-bot", "intern-bot"])}
            decision = rng.choice(["deny", "suggest", "allow"])
        else:
            rule["match"] = {"action": f"svc{s}.*",
                             "affected_records": {"gt": rng.choice([100, 500, 1000])}}
            decision = "require_approval"
        rule["decision"] = decision
        rules.append(rule)
    policy = _header(autonomy=False)
    policy["defaults"]["decision"] = "notify"
    policy["rules"] = rules
    return policy


def universe_1000(policy: dict[str, Any]) -> Universe:
    names: set[str] = set(TOP_LEVEL_ACTIONS)
    for rule in policy["rules"]:
        match = rule.get("match") or {}
        acts = match.get("action", [])
        for a in acts if isinstance(acts, list) else [acts]:
            names.add(a.replace("*", "_" + OBJECTS[len(a) % len(OBJECTS)]).replace("._", "."))
    rng = random.Random(7)
    names.update(_svc_action(rng, 200) for _ in range(300))  # mostly no rule at all
    names.add("svc3.drop_table")
    return _generated_universe(sorted(names))


# --- varied actions ----------------------------------------------------------------------------


def _number_near(rng: random.Random, limits: Sequence[float], *,
                 floats: bool) -> int | float:
    limit = rng.choice(limits)
    r = rng.random()
    if r < 0.25:
        return limit
    if r < 0.5:
        return limit + (0.01 if floats and rng.random() < 0.5 else 1)
    if r < 0.65:
        return max(0, limit - 1)
    value = rng.uniform(0, 3 * max(limits))
    return round(value, 2) if floats and rng.random() < 0.5 else int(value)


def make_actions(universe: Universe, n: int, seed: int) -> list[dict[str, Any]]:
    """n varied actions (fixed seed): every action name, present and missing fields."""
    rng = random.Random(seed)
    names = list(universe.actions)
    out: list[dict[str, Any]] = []
    for i in range(n):
        act: dict[str, Any] = {"action": names[i] if i < len(names) else rng.choice(names)}
        if rng.random() < 0.8:
            agent = rng.choice(universe.agents)
            if agent in universe.scoped and rng.random() < 0.6:
                agent = rng.choice(universe.agents)
            act["agent"] = agent
        if rng.random() < 0.8:
            env = rng.choice(universe.environments)
            act["environment"] = env if rng.random() < 0.5 else rng.choice(universe.environments)
        if rng.random() < 0.6:
            act["capabilities"] = rng.sample(universe.capabilities, rng.randrange(4))
        if rng.random() < 0.6:
            act["amount"] = _number_near(rng, universe.amounts, floats=True)
            act["currency"] = "EUR"
        elif universe.nulls and rng.random() < 0.2:
            act["amount"] = None
        if rng.random() < 0.5:
            act["affected_records"] = int(_number_near(rng, universe.records, floats=False))
        if rng.random() < 0.3:
            act["recipients"] = rng.sample(universe.recipients, rng.randrange(1, 3))
        if rng.random() < 0.6:
            act["confidence"] = (rng.choice(universe.confidences) if rng.random() < 0.4
                                 else round(rng.uniform(0.3, 1.0), 2))
        if rng.random() < 0.15:
            act["risk"] = rng.choice(["low", "medium", "high"])
        if rng.random() < 0.5:
            args: dict[str, Any] = {"target": rng.choice(["db1", "cache", "eu-west"])}
            if rng.random() < 0.6:
                args["rows"] = rng.choice([0, 5, 10, 100, 101, 5000])
            if rng.random() < 0.3:
                args["force"] = rng.random() < 0.5
            act["args"] = args
        if rng.random() < 0.5:
            act["reason"] = "scheduled maintenance"
        out.append(act)
    return out


@dataclass(frozen=True, kw_only=True)
class BenchPolicy:
    """One policy of the bench, in both languages' source form, with its actions' universe."""

    key: str
    title: str
    path: str
    """Where its YAML lives (or would, for the generated ones)."""
    yaml_text: str
    data: dict[str, Any]
    universe: Universe


def bench_policies() -> list[BenchPolicy]:
    spec_text = SPEC_EXAMPLE.read_text()
    p50, p1000 = policy_50(), policy_1000()
    return [
        BenchPolicy(key="a", title="SPEC example (2 CEL)", path=str(SPEC_EXAMPLE),
                    yaml_text=spec_text, data=load_yaml(spec_text), universe=SPEC_UNIVERSE),
        BenchPolicy(key="b", title="generated (5 CEL)", path="gen50.yaml",
                    yaml_text=dump_yaml(p50), data=p50, universe=universe_50()),
        BenchPolicy(key="c", title="generated (5 CEL)", path="gen1000.yaml",
                    yaml_text=dump_yaml(p1000), data=p1000, universe=universe_1000(p1000)),
    ]


def main(argv: list[str]) -> int:
    from bench.policies.cedar import translate

    if len(argv) != 1:
        print("usage: python -m bench.policies.generate DIR", file=sys.stderr)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    for bp in bench_policies():
        stem = Path(bp.path).stem
        (out / f"{stem}.yaml").write_text(bp.yaml_text)
        (out / f"{stem}.cedar").write_text(translate(bp.data)[0])
        print(f"wrote {out / stem}.yaml and .cedar")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
