"""`export-feedback`: every decided request as one JSON line of labelled eval data.

Rejections are negative examples, edited approvals corrections (with the RFC 6902 patch from
the proposed to the final args), untouched approvals regression cases; `schema.json` pins it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from interlock.insights.history import full_rows
from interlock.store import Store
from interlock.store.records import State

SCHEMA_ID = "interlock.feedback/1"
SCHEMA_PATH = Path(__file__).with_name("schema.json")

Label = Literal["negative", "correction", "regression"]
_APPROVED = {State.APPROVED, State.EXECUTING, State.SUCCEEDED, State.FAILED, State.UNKNOWN}


def schema() -> dict[str, Any]:
    """The JSON Schema every exported line validates against."""
    data: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return data


def _pointer(path: list[str]) -> str:
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in path)


def json_patch(old: Any, new: Any, path: list[str] | None = None) -> list[dict[str, Any]]:
    """An RFC 6902 patch turning `old` into `new` (objects recursively; other values whole)."""
    path = path or []
    if isinstance(old, dict) and isinstance(new, dict):
        ops: list[dict[str, Any]] = []
        for key in old:
            if key not in new:
                ops.append({"op": "remove", "path": _pointer([*path, str(key)])})
        for key, value in new.items():
            if key not in old:
                ops.append({"op": "add", "path": _pointer([*path, str(key)]), "value": value})
            else:
                ops.extend(json_patch(old[key], value, [*path, str(key)]))
        return ops
    if old == new and type(old) is type(new):
        return []
    return [{"op": "replace", "path": _pointer(path), "value": new}]


def apply_patch(doc: Any, patch: list[dict[str, Any]]) -> Any:
    """Apply a patch made by `json_patch` (add, remove, replace); for checks and consumers."""
    doc = json.loads(json.dumps(doc))
    for op in patch:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        if not parts:
            doc = op["value"]
            continue
        parent = doc
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent[p]
        last: Any = int(parts[-1]) if isinstance(parent, list) else parts[-1]
        if op["op"] == "remove":
            del parent[last]
        else:
            parent[last] = op["value"]
    return doc


def label_of(state: State, votes: list[dict[str, Any]], edited: bool) -> Label | None:
    """negative (people said no), correction (approved with edits), regression (approved
    as proposed); None where no person decided."""
    verdicts = {v["verdict"] for v in votes}
    if state in (State.DENIED, State.CHANGES_REQUESTED) and (
        verdicts & {"deny", "request_changes"}
    ):
        return "negative"
    if state in _APPROVED and "approve" in verdicts:
        return "correction" if edited or any(v["args"] is not None for v in votes) else (
            "regression")
    return None


def line(row: dict[str, Any]) -> dict[str, Any]:
    """The export record of one request row (from `history.full_rows`)."""
    action: dict[str, Any] = row["action"]
    result: dict[str, Any] = row["result"]
    proposed = action.get("args") if isinstance(action.get("args"), dict) else {}
    final = row["final_args"]
    state = State(row["state"])
    votes = row["votes"]
    notes = [{"reviewer": v["reviewer"], "verdict": v["verdict"], "note": v["note"]}
             for v in votes if (v["note"] or "").strip()]
    reviews = [a for a in row["annotations"] if a["kind"] == "review"]
    ratings = [a for a in row["annotations"] if a["kind"] == "rating"]
    notes += [{"reviewer": a["reviewer"], "verdict": a["value"], "note": a["note"]}
              for a in row["annotations"] if (a["note"] or "").strip()]
    return {
        "schema": SCHEMA_ID,
        "id": row["id"],
        "label": label_of(state, votes, bool(row["edited"])),
        "agent": row["agent"],
        "action": row["action_name"],
        "created_at": row["created_at"],
        "decided_at": row["decided_at"],
        "proposal": action,
        "context": action.get("context") if isinstance(action.get("context"), dict) else None,
        "policy": {
            "decision": result.get("decision"), "rules": list(result.get("rules", ())),
            "reasons": list(result.get("reasons", ())), "risk": result.get("risk"),
            "policy_hash": row["policy_hash"],
        },
        "votes": [{"reviewer": v["reviewer"], "verdict": v["verdict"], "note": v["note"],
                   "args": v["args"], "round": v["round"], "at": v["at"]} for v in votes],
        "proposed_args": proposed,
        "final_args": final,
        "edit": json_patch(proposed, final),
        "notes": notes,
        "outcome": {"state": state.value, "reason": row["reason"]},
        "reviews": [{"reviewer": a["reviewer"], "verdict": a["value"], "note": a["note"],
                     "at": a["at"]} for a in reviews],
        "ratings": [{"reviewer": a["reviewer"], "rating": a["value"],
                     "correction": a["correction"], "note": a["note"], "at": a["at"]}
                    for a in ratings],
    }


def export_lines(store: Store, *, include_pending: bool = False) -> Iterator[str]:
    """One JSON line per request, oldest first (pending ones only when asked)."""
    for row in full_rows(store):
        if not include_pending and row["state"] in (State.PENDING.value, State.SUBMITTED.value):
            continue
        yield json.dumps(line(row), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
