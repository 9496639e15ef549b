"""`export-feedback`: every line validates against schema.json; labels and edit patches."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
from insights_history import History

from interlock.insights.export import apply_patch, export_lines, json_patch, schema


def lines(history: History, **kw: Any) -> dict[str, dict[str, Any]]:
    return {d["id"]: d for d in map(json.loads, export_lines(history.store, **kw))}


def test_every_line_validates_against_the_schema(history: History) -> None:
    validator = jsonschema.Draft202012Validator(schema())
    validator.check_schema(schema())
    out = lines(history)
    assert len(out) == 77
    for line in out.values():
        validator.validate(line)


def test_labels(history: History) -> None:
    out = lines(history)
    refunds = history.ids["refunds"]
    assert [out[r]["label"] for r in refunds[:4]] == ["negative"] * 4
    assert out[refunds[4]]["label"] == "correction"
    assert [out[r]["label"] for r in refunds[5:9]] == ["regression"] * 4
    assert out[refunds[9]]["label"] is None  # timed out: nobody decided
    assert out[history.ids["emails"][0]]["label"] is None  # allowed by the policy


def test_record_carries_votes_notes_outcome_and_annotations(history: History) -> None:
    out = lines(history)
    edited = out[history.ids["refunds"][4]]
    assert edited["edit"] == [{"op": "replace", "path": "/amount", "value": 25}]
    assert edited["proposed_args"] == {"order": "o4", "amount": 50}
    assert edited["final_args"] == {"order": "o4", "amount": 25}
    assert edited["votes"][0]["reviewer"] == "bob" and edited["votes"][0]["args"] is not None
    assert edited["policy"]["rules"] == ["refunds"]
    assert edited["outcome"]["state"] == "succeeded"
    denied = out[history.ids["refunds"][0]]
    assert denied["notes"] == [{"reviewer": "bob", "verdict": "deny", "note": "not eligible"}]
    assert denied["outcome"] == {"state": "denied", "reason": "not eligible"}
    rated = out[history.ids["refunds"][8]]
    assert rated["ratings"][0]["rating"] == "incorrect"
    assert rated["ratings"][0]["correction"] == {"amount": 0}
    flagged = out[history.ids["emails"][0]]
    assert flagged["reviews"][0]["verdict"] == "flagged"
    assert {"reviewer": "bob", "verdict": "flagged", "note": "wrong customer"} in flagged["notes"]


def test_pending_requests_only_when_asked(history: History) -> None:
    rid = history.submit("billing", action="refund", args={"order": "late", "amount": 1})
    assert rid not in lines(history)
    assert lines(history, include_pending=True)[rid]["label"] is None


def test_json_patch_round_trips() -> None:
    cases = [
        ({}, {}),
        ({"a": 1}, {"a": 2}),
        ({"a": 1, "b": {"c": [1, 2]}}, {"b": {"c": [1, 3], "d": None}, "e/f~": True}),
        ({"x": 1}, {"x": 1.0}),
        ({"x": True}, {"x": 1}),
    ]
    for old, new in cases:
        patch = json_patch(old, new)
        assert apply_patch(old, patch) == new
        assert (patch == []) == (json.dumps(old) == json.dumps(new))
    assert json_patch({"a/b": 1}, {})[0]["path"] == "/a~1b"
