"""Approval workflows over HTTP: claims (SPEC §4's answers), quorum, stages, delegation, edits,
request changes and revisions, batches, typed confirmation, self-approval, reviews, timeouts.
"""

from __future__ import annotations

from typing import Any

import pytest
from tests.server.conftest import Env

pytestmark = pytest.mark.anyio


async def state(env: Env, rid: str) -> str:
    return str((await env.get(f"/v1/actions/{rid}", "rev")).json()["state"])


async def claim(env: Env, rid: str, who: str = "bot") -> Any:
    return await env.post(f"/v1/actions/{rid}/claim", who)


async def test_claim_answers(env: Env) -> None:
    ok = await env.submit(action="read_file", args={"p": "/etc"}, checkpoint={"step": 3})
    r = await claim(env, ok["id"])
    assert r.status_code == 200
    body = r.json()
    assert body["args"] == {"p": "/etc"} and body["checkpoint"] == {"step": 3}
    assert body["lease_expires_at"] > 0 and body["digest"] == ok["digest"]
    r = await claim(env, ok["id"])
    assert (r.status_code, r.json()["error"]["code"]) == (409, "already_claimed")

    pend = await env.submit(action="task.run")
    r = await claim(env, pend["id"])
    assert (r.status_code, r.json()["error"]["code"]) == (409, "not_decided")
    assert (await claim(env, pend["id"], "other")).status_code == 404

    deny = await env.submit(action="table.drop")
    r = await claim(env, deny["id"])
    assert (r.status_code, r.json()["error"]["code"]) == (410, "denied")
    assert "drops" in r.json()["error"]["message"]

    sug = await env.submit(action="iam.grant")
    assert (await claim(env, sug["id"])).json()["error"]["code"] == "suggested"

    cancelled = await env.submit(action="task.run")
    await env.post(f"/v1/actions/{cancelled['id']}/cancel", "bot", {"reason": "not needed"})
    r = await claim(env, cancelled["id"])
    assert (r.status_code, r.json()["error"]) == (410, {"code": "cancelled",
                                                        "message": "not needed"})

    changes = await env.submit(action="task.run")
    await env.decide(changes["id"], "rev", "request_changes", note="smaller, please")
    r = await claim(env, changes["id"])
    assert (r.status_code, r.json()["error"]["code"]) == (410, "changes_requested")


async def test_ttl_passed_needs_reconfirmation(env: Env) -> None:
    rid = (await env.submit(action="task.run"))["id"]
    assert (await env.decide(rid, "rev")).json()["state"] == "approved"
    env.clock.advance(16 * 60)
    r = await claim(env, rid)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "reconfirmation_required")
    assert await state(env, rid) == "pending"
    assert (await env.decide(rid, "rev")).json()["state"] == "approved"
    assert (await claim(env, rid)).status_code == 200


async def test_outcome_and_unknown(env: Env) -> None:
    rid = (await env.submit(action="read_file"))["id"]
    await claim(env, rid)
    env.clock.advance(11 * 60)
    assert rid in env.sweep()
    assert await state(env, rid) == "unknown"
    r = await env.post(f"/v1/actions/{rid}/outcome", "bot", {"status": "succeeded"})
    assert r.status_code == 409
    r = await env.post(f"/v1/actions/{rid}/resolve", "oncall",
                       {"status": "failed", "note": "checked: it did not run"})
    assert r.json()["state"] == "failed"
    r = await env.post(f"/v1/actions/{rid}/outcome", "bot", {"status": "bogus"})
    assert r.status_code == 422


async def test_quorum_counts_distinct_reviewers(env: Env) -> None:
    rid = (await env.submit(action="db.delete_rows", affected_records=3))["id"]
    r = await env.decide(rid, "rev")
    assert r.json()["state"] == "pending"
    r = await env.decide(rid, "rev")  # the same vote again is not counted twice
    assert r.json()["state"] == "pending"
    r = await env.decide(rid, "rev2")
    assert r.json()["state"] == "approved"
    votes = (await env.get(f"/v1/actions/{rid}", "rev")).json()["votes"]
    assert {v["reviewer"] for v in votes} == {"rev", "rev2"}


async def test_stages_in_order(env: Env) -> None:
    rid = (await env.submit(action="send_payment", amount=5, currency="EUR"))["id"]
    r = await env.decide(rid, "sec")
    assert (r.status_code, r.json()["error"]["code"]) == (403, "not_an_approver")
    assert (await env.decide(rid, "fin")).json()["state"] == "pending"
    assert (await env.decide(rid, "sec")).json()["state"] == "approved"


async def test_one_deny_denies_and_needs_a_reason(env: Env) -> None:
    rid = (await env.submit(action="db.delete_rows"))["id"]
    await env.decide(rid, "rev")
    r = await env.decide(rid, "rev2", "deny")
    assert r.status_code == 422
    r = await env.decide(rid, "rev2", "deny", note="wrong table")
    assert (r.json()["state"], r.json()["reason"]) == ("denied", "wrong table")


async def test_delegate(env: Env) -> None:
    rid = (await env.submit(action="task.run"))["id"]
    assert (await env.decide(rid, "em")).status_code == 403
    r = await env.post(f"/v1/actions/{rid}/delegate", "rev", {"to": ["engineering-manager"]})
    assert r.status_code == 200 and r.json()["state"] == "pending"
    assert (await env.decide(rid, "em")).json()["state"] == "approved"
    r = await env.post(f"/v1/actions/{rid}/delegate", "rev", {"to": []})
    assert r.status_code in (409, 422)


async def test_delegate_only_to_whom_the_rule_names(env: Env) -> None:
    # SPEC §4: delegation adds reviewers from the rule's approvers or `escalate_to`; an
    # approver cannot hand the decision to anyone they like.
    rid = (await env.submit(action="task.run"))["id"]
    for to in (["user:outsider"], ["marketing"], ["engineering-manager", "user:outsider"]):
        r = await env.post(f"/v1/actions/{rid}/delegate", "rev", {"to": to})
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == "not_an_approver_here"
        assert "engineering-manager" in r.json()["error"]["message"]  # what it may name
    assert (await env.decide(rid, "outsider")).status_code == 403
    assert (await env.get(f"/v1/actions/{rid}", "rev")).json()["state"] == "pending"


async def test_stale_version(env: Env) -> None:
    sub = await env.submit(action="db.delete_rows")
    await env.decide(sub["id"], "rev", version=sub["version"])
    r = await env.decide(sub["id"], "rev2", version=sub["version"])
    assert (r.status_code, r.json()["error"]["code"]) == (409, "stale_version")


async def test_edit_then_claim_gets_edited_args(env: Env) -> None:
    rid = (await env.submit(action="task.run", args={"n": 100}))["id"]
    r = await env.decide(rid, "rev", args={"n": 10}, note="fewer")
    assert r.json()["state"] == "approved" and r.json()["final_args"] == {"n": 10}
    assert (await claim(env, rid)).json()["args"] == {"n": 10}
    got = (await env.get(f"/v1/actions/{rid}", "bot")).json()
    assert got["action"]["args"] == {"n": 100}


async def test_request_changes_and_revision(env: Env) -> None:
    first = (await env.submit(action="task.run", args={"n": 100}))["id"]
    r = await env.decide(first, "rev", "request_changes", note="do 10 at a time")
    assert r.json()["state"] == "changes_requested"
    second = await env.submit(action="task.run", args={"n": 10}, revision_of=first)
    got = (await env.get(f"/v1/actions/{second['id']}", "rev")).json()
    assert got["revision_of"] == first and got["state"] == "pending"
    r = await env.post("/v1/actions", "other", {"action": "task.run", "revision_of": first})
    assert r.status_code == 404


async def test_typed_confirmation_is_enforced(env: Env) -> None:
    sub = await env.submit(action="deploy", environment="production")
    assert sub["confirmation_phrase"] == "deploy production"
    r = await env.decide(sub["id"], "rev")
    assert (r.status_code, r.json()["error"]["code"]) == (403, "confirmation_required")
    r = await env.decide(sub["id"], "rev", confirmation="deploy staging")
    assert r.status_code == 403
    r = await env.decide(sub["id"], "rev", confirmation="deploy production")
    assert r.json()["state"] == "approved"


async def test_typed_confirmation_in_batches(env: Env) -> None:
    for i in range(2):
        await env.submit(action="deploy", environment="production", batch_id="d",
                         idempotency_key=f"d{i}")
    r = await env.post("/v1/batches/d/decision", "rev", {"verdict": "approve_all"})
    assert r.json()["results"] == [] and len(r.json()["skipped"]) == 2
    r = await env.post("/v1/batches/d/decision", "rev",
                       {"verdict": "approve_all", "confirmation": "deploy production"})
    assert [x["state"] for x in r.json()["results"]] == ["approved", "approved"]


async def test_a_batch_marks_confirmed_only_the_approvals_it_confirmed(env: Env) -> None:
    """The phrase given with a batch confirms the items that ask for it, not the others."""
    deploy = (await env.submit(action="deploy", environment="production", batch_id="m",
                               idempotency_key="m-deploy"))["id"]
    plain = (await env.submit(action="task.run", batch_id="m", idempotency_key="m-task"))["id"]
    denied = (await env.submit(action="task.run", batch_id="m", idempotency_key="m-no"))["id"]
    r = await env.post("/v1/batches/m/decision", "rev", {
        "verdict": "each", "items": {deploy: "approve", plain: "approve", denied: "deny"},
        "confirmation": "deploy production", "note": "ok"})
    assert {x["id"] for x in r.json()["results"]} == {deploy, plain, denied}
    confirmed = {rid: [v.confirmed for v in env.store.votes(rid)]
                 for rid in (deploy, plain, denied)}
    assert confirmed == {deploy: [True], plain: [False], denied: [False]}


async def test_self_approval_is_refused(env: Env) -> None:
    _, secret = env.store.create_token(kind="reviewer", name="bot", groups=("tech-lead",),
                                       actor="test")
    rid = (await env.submit(action="task.run"))["id"]
    r = await env.client.post(f"/v1/actions/{rid}/decision", json={"verdict": "approve"},
                              headers={"Authorization": f"Bearer {secret}"})
    assert (r.status_code, r.json()["error"]["code"]) == (403, "self_approval")


async def test_batches(env: Env) -> None:
    ids = [(await env.submit(action="task.run", batch_id="b", idempotency_key=f"b{i}"))["id"]
           for i in range(3)]
    await env.submit(action="read_file", batch_id="b", idempotency_key="b-read")
    r = await env.post("/v1/batches/b/decision", "rev", {
        "verdict": "each", "items": {ids[0]: "approve", ids[1]: "deny"}, "note": "no"})
    assert {x["id"]: x["state"] for x in r.json()["results"]} == {
        ids[0]: "approved", ids[1]: "denied"}
    r = await env.post("/v1/batches/b/decision", "rev", {"verdict": "reject_all"})
    assert [x["id"] for x in r.json()["results"]] == [ids[2]]
    assert {s["id"] for s in r.json()["skipped"]} >= {ids[0], ids[1]}
    assert await state(env, ids[2]) == "denied"
    for i in range(2):
        await env.submit(action="task.run", batch_id="c", idempotency_key=f"c{i}")
    r = await env.post("/v1/batches/c/decision", "rev", {"verdict": "approve_all"})
    assert [x["state"] for x in r.json()["results"]] == ["approved", "approved"]
    r = await env.post("/v1/batches/none/decision", "rev", {"verdict": "approve_all"})
    assert r.status_code == 404
    r = await env.post("/v1/batches/c/decision", "rev", {"verdict": "each"})
    assert r.status_code == 422


async def test_post_execution_review_and_feedback(env: Env) -> None:
    rid = (await env.submit(action="send_email", recipients=["a@example.com"]))["id"]
    queue = (await env.get("/v1/queue", "oncall", kind="review")).json()["items"]
    assert queue == []
    await claim(env, rid)
    r = await env.post(f"/v1/actions/{rid}/review", "oncall", {"verdict": "flagged"})
    assert (r.status_code, r.json()["error"]["code"]) == (409, "not_finished")
    await env.post(f"/v1/actions/{rid}/outcome", "bot", {"status": "succeeded"})
    queue = (await env.get("/v1/queue", "oncall", kind="review")).json()["items"]
    assert [q["id"] for q in queue] == [rid]
    r = await env.post(f"/v1/actions/{rid}/review", "oncall",
                       {"verdict": "reversed", "note": "wrong list"})
    assert r.json()["value"] == "reversed"
    r = await env.post(f"/v1/actions/{rid}/feedback", "oncall",
                       {"rating": "incorrect", "correction": "require_approval"})
    assert r.json()["correction"] == "require_approval"
    got = (await env.get(f"/v1/actions/{rid}", "bot")).json()
    assert [a["value"] for a in got["annotations"]] == ["reversed", "incorrect"]
    assert (await env.get("/v1/queue", "oncall", kind="review")).json()["items"] == []


async def test_suggested_queue_and_resolve(env: Env) -> None:
    rid = (await env.submit(action="iam.grant", args={"user": "x"}))["id"]
    items = (await env.get("/v1/queue", "oncall", kind="suggested")).json()["items"]
    assert [i["id"] for i in items] == [rid]
    assert (await env.get("/v1/queue", "rev", kind="suggested")).json()["items"] == []
    r = await env.post(f"/v1/actions/{rid}/resolve", "oncall", {"status": "succeeded"})
    assert r.status_code == 409
    r = await env.post(f"/v1/actions/{rid}/resolve", "oncall", {"status": "dismissed"})
    assert r.json()["state"] == "dismissed"


async def test_approval_queue_is_what_i_may_decide(env: Env) -> None:
    a = (await env.submit(action="task.run"))["id"]
    env.clock.advance(1)
    b = (await env.submit(action="send_payment", amount=3))["id"]
    env.clock.advance(1)
    c = (await env.submit("other", action="task.run"))["id"]
    items = [i["id"] for i in (await env.get("/v1/queue", "rev")).json()["items"]]
    assert items == [a, c]
    assert [i["id"] for i in (await env.get("/v1/queue", "fin")).json()["items"]] == [b]
    assert (await env.get("/v1/queue", "sec")).json()["items"] == []
    assert (await env.get("/v1/queue", "outsider")).json()["items"] == []


async def test_cancel(env: Env) -> None:
    rid = (await env.submit(action="task.run"))["id"]
    assert (await env.post(f"/v1/actions/{rid}/cancel", "other")).status_code == 404
    r = await env.post(f"/v1/actions/{rid}/cancel", "bot")
    assert r.json()["state"] == "cancelled"
    r = await env.post(f"/v1/actions/{rid}/cancel", "bot")
    assert r.status_code == 409
    ok = (await env.submit(action="read_file"))["id"]
    await claim(env, ok)
    assert (await env.post(f"/v1/actions/{ok}/cancel", "bot")).status_code == 409


async def test_timeout_expires(env: Env) -> None:
    rid = (await env.submit(action="task.run"))["id"]
    env.clock.advance(9 * 60)
    assert env.sweep() == []
    env.clock.advance(2 * 60)
    assert rid in env.sweep()
    assert await state(env, rid) == "expired"
    r = await claim(env, rid)
    assert (r.status_code, r.json()["error"]["code"]) == (410, "expired")


async def test_timeout_escalates_once_then_denies(env: Env) -> None:
    sub = await env.submit(action="deploy", environment="production")
    rid = sub["id"]
    assert (await env.decide(rid, "em", confirmation="deploy production")).status_code == 403
    env.clock.advance(3601)
    assert rid in env.sweep()
    assert await state(env, rid) == "pending"
    items = [i["id"] for i in (await env.get("/v1/queue", "em")).json()["items"]]
    assert items == [rid]
    env.clock.advance(3601)
    env.sweep()
    assert await state(env, rid) in ("expired", "denied")


async def test_escalated_reviewer_may_approve(env: Env) -> None:
    rid = (await env.submit(action="deploy", environment="production"))["id"]
    env.clock.advance(3601)
    env.sweep()
    r = await env.decide(rid, "em", confirmation="deploy production")
    assert r.json()["state"] == "approved"


async def test_kill_switch(env: Env) -> None:
    env.store.pause(agent="bot", reason="incident 42", actor="test")
    sub = await env.submit(action="read_file")
    assert sub["decision"] == "deny" and any("incident 42" in r for r in sub["reasons"])
    assert (await env.submit("other", action="read_file"))["decision"] == "allow"
    env.store.unpause(agent="bot", actor="test")
    assert (await env.submit(action="read_file"))["decision"] == "allow"


async def test_evaluate_stores_nothing(env: Env) -> None:
    r = await env.post("/v1/evaluate", "bot", {"action": "deploy", "environment": "production"})
    assert r.json()["decision"] == "require_approval" and r.json()["rules"] == ["prod"]
    assert env.store.list_requests() == []


async def test_audit_and_insights(env: Env) -> None:
    rid = (await env.submit(action="task.run"))["id"]
    await env.decide(rid, "rev", note="fine")
    entries = (await env.get("/v1/audit", "rev", request_id=rid)).json()["entries"]
    assert next(e["event"] for e in entries) == "submitted"
    assert any(e["actor"] == "reviewer:rev" for e in entries)
    page = (await env.get("/v1/audit", "rev", limit=2)).json()
    assert len(page["entries"]) == 2 and page["next_after"] == page["entries"][-1]["seq"]
    nxt = (await env.get("/v1/audit", "rev", after=page["next_after"], limit=1)).json()
    assert nxt["entries"][0]["seq"] == page["next_after"] + 1
    only = (await env.get("/v1/audit", "rev", actor="reviewer:rev")).json()["entries"]
    assert only and all(e["actor"] == "reviewer:rev" for e in only)
    v = (await env.get("/v1/audit/verify", "rev")).json()
    assert v["ok"] is True and v["checked"] >= 3
    ins = (await env.get("/v1/insights", "rev")).json()
    assert ins["overall"]["requests"] == 1 and ins["overall"]["approved"] == 1
    assert ins["overall"]["approval_rate"] == 1.0
    assert ins["overall"]["untouched"] == 0  # approved with a note: not untouched
    assert ins["by"] == "rule" and isinstance(ins["advice"], list)
