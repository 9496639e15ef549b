"""Plain-words rendering of a PolicyResult, for `policy explain` and reviewers."""

from __future__ import annotations

from typing import Any

from interlock.policy.records import Gate, PolicyResult


def format_duration(seconds: float) -> str:
    """`4h`, `90s`, `2d`, `1h30m`: the largest units that divide it."""
    total = round(seconds)
    if total <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if total >= size:
            parts.append(f"{total // size}{unit}")
            total %= size
    return "".join(parts)


def describe_gate(gate: Gate) -> list[str]:
    """One line per stage, then the gate's clock and confirmation."""
    lines = []
    order = "together" if gate.parallel else "in order"
    for stage in gate.stages:
        who = ", ".join(stage.approvers)
        extra = ""
        if stage.timeout is not None:
            extra = f"; stage timeout {format_duration(stage.timeout)}"
            if stage.on_timeout is not None:
                extra += f" then {stage.on_timeout.value}"
        lines.append(f"stage {stage.name}: {stage.quorum} of {who}{extra}")
    clock = f"timeout {format_duration(gate.timeout)} then {gate.on_timeout.value}"
    if gate.escalate_to:
        clock += f" to {', '.join(gate.escalate_to)}"
    clock += f"; approval valid {format_duration(gate.approval_ttl)}"
    if gate.confirm:
        clock += "; typed confirmation"
    if len(gate.stages) > 1:
        clock += f"; stages {order}"
    lines.append(clock)
    if gate.guidance:
        lines.append(f"guidance: {gate.guidance}")
    return lines


def explain_text(result: PolicyResult) -> str:
    """The decision, deciding rules, reasons, risk and requirements, as a short report."""
    out = [
        f"decision: {result.decision.value}",
        f"risk:     {result.risk.value}",
        f"rules:    {', '.join(result.rules) if result.rules else '(none)'}",
        "reasons:",
    ]
    out.extend(f"  - {r}" for r in result.reasons)
    if result.requirements is not None:
        out.append("requirements:")
        for gate in result.requirements.gates:
            out.append(f"  {gate.source}:")
            out.extend(f"    {line}" for line in describe_gate(gate))
    if result.fail_open:
        out.append("fail_open: may run while the gateway is unreachable")
    return "\n".join(out)


def explain_json(result: PolicyResult) -> dict[str, Any]:
    """`{decision, rules, reasons, risk}` plus requirements and fail_open."""
    return {
        "decision": result.decision.value,
        "rules": list(result.rules),
        "reasons": list(result.reasons),
        "risk": result.risk.value,
        "requirements": None if result.requirements is None else result.requirements.to_json(),
        "fail_open": result.fail_open,
    }
