"""The policy benchmark compares like with like: its Cedar translations decide as interlock does.

A correctness check of bench/policies, not a timing; the benchmark itself never runs here.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

import cedarpy  # noqa: F401  (a dev dependency: the Cedar side of the comparison)
import pytest

# `bench/` sits beside `src/`, outside the installed package: import it from the checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.policies.cedar import CedarPolicy, to_request
from bench.policies.generate import BenchPolicy, bench_policies, make_actions
from bench.policy import load_interlock

from interlock.policy.records import Decision, Facts

POLICIES = {bp.key: bp for bp in bench_policies()}


@pytest.fixture(scope="module")
def cedar_spec() -> CedarPolicy:
    return CedarPolicy(POLICIES["a"].data)


@pytest.mark.parametrize("key", sorted(POLICIES))
def test_cedar_and_interlock_agree(key: str) -> None:
    bp: BenchPolicy = POLICIES[key]
    policy, cedar = load_interlock(bp), CedarPolicy(bp.data)
    actions = make_actions(bp.universe, 400, seed=11)
    diffs = []
    for act in actions:
        ours = policy.evaluate(act).decision
        theirs = cedar.evaluate(to_request(act))
        if ours != theirs:
            diffs.append(f"interlock {ours.value}, cedar {theirs.value}: {act}")
    assert not diffs, f"{len(diffs)} of {len(actions)} differ:\n" + "\n".join(diffs[:10])


@pytest.mark.parametrize("key", ["a", "b"])
def test_cedar_and_interlock_agree_on_escalation_facts(key: str) -> None:
    """The bench runs with default facts; here novelty and failures vary too."""
    bp = POLICIES[key]
    policy, cedar = load_interlock(bp), CedarPolicy(bp.data)
    rng = random.Random(5)
    diffs = []
    for act in make_actions(bp.universe, 300, seed=12):
        recipients = act.get("recipients") or []
        facts = Facts(novel=rng.random() < 0.3, failures=rng.choice([0, 2, 3, 5]),
                      novel_recipients=tuple(recipients[: rng.randrange(len(recipients) + 1)]))
        ours = policy.evaluate(act, facts).decision
        theirs = cedar.evaluate(to_request(act, novel=facts.novel, failures=facts.failures,
                                          novel_recipient=bool(facts.novel_recipients)))
        if ours != theirs:
            diffs.append(f"interlock {ours.value}, cedar {theirs.value}: {act} {facts}")
    assert not diffs, f"{len(diffs)} differ:\n" + "\n".join(diffs[:10])


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        ({"action": "deploy", "environment": "production", "agent": "ops-agent"},
         Decision.REQUIRE_APPROVAL),
        ({"action": "read_only_query", "environment": "production"}, Decision.ALLOW),
        ({"action": "read_only_query", "confidence": 0.5}, Decision.REQUIRE_APPROVAL),
        ({"action": "read_docs", "capabilities": ["payment"]}, Decision.REQUIRE_APPROVAL),
        ({"action": "read_docs", "capabilities": ["payment"], "amount": None},
         Decision.REQUIRE_APPROVAL),
        ({"action": "read_docs", "capabilities": ["payment"], "amount": 100}, Decision.ALLOW),
        ({"action": "read_docs", "capabilities": ["payment"], "amount": 10000.01},
         Decision.REQUIRE_APPROVAL),
        ({"action": "deploy", "agent": "billing-bot"}, Decision.DENY),
        ({"action": "iam.create_user", "environment": "dev"}, Decision.SUGGEST),
        ({"action": "crm.get_contact", "confidence": 0.7}, Decision.ALLOW),
        ({"action": "crm.get_contact", "risk": "high"}, Decision.REQUIRE_APPROVAL),
        ({"action": "crm.get_contact", "agent": "ops-agent"}, Decision.REQUIRE_APPROVAL),
        ({"action": "db.get_row", "affected_records": 1001}, Decision.REQUIRE_APPROVAL),
    ],
)
def test_cedar_spec_example_by_hand(
    cedar_spec: CedarPolicy, action: dict[str, Any], expected: Decision
) -> None:
    """SPEC §3 worked by hand on the SPEC example, so the Cedar side is checked on its own too."""
    assert cedar_spec.evaluate(to_request(action)) == expected
