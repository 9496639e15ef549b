"""The one error shape, limits (413 / 422 / 429), malformed input, headers, logs and OpenAPI.

No input a client can send is a 500; tokens never show up in logs or error messages.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from tests.server.conftest import POLICY, Env

from interlock.policy import load_policy
from interlock.server.app import ENDPOINTS

pytestmark = pytest.mark.anyio


def assert_error(r: object, status: int, code: str | None = None) -> None:
    import httpx

    assert isinstance(r, httpx.Response)
    assert r.status_code == status, r.text
    body = r.json()
    assert list(body) == ["error"]
    assert sorted(body["error"]) == ["code", "message"]
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code


async def test_error_shape_everywhere(env: Env) -> None:
    assert_error(await env.get("/v1/nowhere", "bot"), 404, "not_found")
    assert_error(await env.client.delete("/v1/actions"), 405, "method_not_allowed")
    assert_error(await env.get("/v1/actions/nope", "bot"), 404, "not_found")
    assert_error(await env.get("/v1/queue", None), 401, "unauthorized")
    assert_error(await env.client.get("/v1/queue", headers={"Authorization": "Basic x"}), 401)
    assert_error(await env.get("/v1/queue", "bot"), 403, "wrong_role")


async def test_malformed_bodies(env: Env) -> None:
    h = env.auth("bot")
    assert_error(await env.client.post("/v1/actions", content=b"{nope", headers=h), 400,
                 "invalid_json")
    assert_error(await env.client.post("/v1/actions", content=b"", headers=h), 400)
    assert_error(await env.client.post("/v1/actions", content=b"\xff\xfe", headers=h), 400)
    assert_error(await env.post("/v1/actions", "bot", [1, 2]), 422)
    assert_error(await env.post("/v1/actions", "bot", {"args": {}}), 422)
    r = await env.post("/v1/actions", "bot", {"action": "x", "confidence": 3})
    assert_error(r, 422, "invalid_input")
    assert "`confidence`" in r.json()["error"]["message"]
    r = await env.post("/v1/actions", "bot", {"action": "x", "args": "no"})
    assert "`args`" in r.json()["error"]["message"]
    rid = (await env.submit(action="task.run"))["id"]
    r = await env.decide(rid, "rev", "maybe")
    assert_error(r, 422)
    assert "`verdict`" in r.json()["error"]["message"]
    assert_error(await env.decide(rid, "rev", "approve", surprise=1), 422)
    assert_error(await env.get(f"/v1/actions/{rid}/wait", "bot", timeout="soon"), 422)
    assert_error(await env.get("/v1/queue", "rev", kind="everything"), 422)
    assert_error(await env.get("/v1/audit", "rev", limit=0), 422)


async def test_body_limit_413(env: Env) -> None:
    big = {"action": "x", "args": {"blob": "a" * (70 * 1024)}}
    assert_error(await env.post("/v1/actions", "bot", big), 413, "too_large")

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(70):
            yield b" " * 1024

    r = await env.client.post("/v1/actions", content=chunks(), headers=env.auth("bot"))
    assert_error(r, 413, "too_large")


async def test_depth_limit_422(env: Env) -> None:
    deep: object = "x"
    for _ in range(40):
        deep = {"a": deep}
    assert_error(await env.post("/v1/actions", "bot", {"action": "x", "args": deep}), 422,
                 "too_deep")
    raw = b'{"action": "x", "args": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    assert_error(await env.client.post("/v1/actions", content=raw, headers=env.auth("bot")),
                 422, "too_deep")
    ok: object = 1
    for _ in range(30):
        ok = {"a": ok}
    assert (await env.post("/v1/actions", "bot", {"action": "x", "args": ok})).status_code == 200


async def test_pending_limit_429(env: Env) -> None:
    for _ in range(8):
        await env.submit(action="task.run")
    assert_error(await env.post("/v1/actions", "bot", {"action": "task.run"}), 429,
                 "pending_limit")
    # another agent is not held back by this one
    assert (await env.post("/v1/actions", "other", {"action": "task.run"})).status_code == 200


async def test_pending_limit_holds_with_idempotency_keys(env: Env) -> None:
    firsts = [await env.submit(action="task.run", idempotency_key=f"k{n}") for n in range(8)]
    assert_error(await env.post("/v1/actions", "bot", {"action": "task.run",
                                                       "idempotency_key": "k8"}),
                 429, "pending_limit")
    # a replay is not a new request: it answers the first one, limit or not
    again = await env.post("/v1/actions", "bot", {"action": "task.run",
                                                  "idempotency_key": "k0"})
    assert again.status_code == 200 and again.json()["id"] == firsts[0]["id"]


async def test_idempotency(env: Env) -> None:
    a = await env.submit(action="task.run", idempotency_key="k", args={"n": 1})
    b = await env.submit(action="task.run", idempotency_key="k", args={"n": 1})
    assert a["id"] == b["id"]
    assert_error(await env.post("/v1/actions", "bot",
                                {"action": "task.run", "idempotency_key": "k", "args": {"n": 2}}),
                 409, "idempotency_conflict")


async def test_security_headers_and_request_id(env: Env) -> None:
    r = await env.get("/healthz", None)
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert len(r.headers["x-request-id"]) == 32
    r = await env.client.get("/healthz", headers={"X-Request-Id": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    r = await env.client.get("/healthz", headers={"X-Request-Id": "bad id\n"})
    assert r.headers["x-request-id"] != "bad id\n"


async def test_logs_never_hold_tokens(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="interlock.access")
    secret = env.tokens["bot"]
    await env.submit(action="read_file")
    await env.client.get(f"/login?token={secret}")
    r = await env.client.get("/v1/queue", headers={"Authorization": "Bearer il_wrong_secret"})
    assert "il_wrong_secret" not in r.text
    assert caplog.records, "the access log is written"
    text = caplog.text
    assert secret not in text and "il_wrong_secret" not in text
    assert '"status": 200' in text and '"request_id"' in text


async def test_openapi_is_complete(env: Env) -> None:
    doc = (await env.get("/openapi.json", None)).json()
    assert doc["openapi"].startswith("3.1")
    spec_paths = {
        ("post", "/v1/actions"), ("get", "/v1/actions/{id}"), ("get", "/v1/actions/{id}/wait"),
        ("get", "/v1/actions/{id}/events"), ("post", "/v1/actions/{id}/claim"),
        ("post", "/v1/actions/{id}/outcome"), ("post", "/v1/actions/{id}/cancel"),
        ("post", "/v1/actions/{id}/decision"), ("post", "/v1/actions/{id}/delegate"),
        ("post", "/v1/actions/{id}/resolve"), ("post", "/v1/actions/{id}/review"),
        ("post", "/v1/actions/{id}/feedback"), ("post", "/v1/batches/{batch_id}/decision"),
        ("get", "/v1/queue"), ("post", "/v1/evaluate"), ("get", "/v1/audit"),
        ("get", "/v1/audit/verify"), ("get", "/v1/insights"), ("get", "/healthz"),
        ("get", "/metrics"),
    }
    have = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert spec_paths <= have
    assert len(ENDPOINTS) == len(have)
    for path, ops in doc["paths"].items():
        for op in ops.values():
            for status, resp in op["responses"].items():
                if status != "200":
                    assert resp["content"]["application/json"]["schema"] == {
                        "$ref": "#/components/schemas/ErrorOut"}, (path, status)
    schemas = doc["components"]["schemas"]
    assert {"ActionIn", "DecisionIn", "RequestOut", "ErrorOut"} <= set(schemas)


async def test_metrics(env: Env) -> None:
    rid = (await env.submit(action="task.run"))["id"]
    await env.submit(action="read_file")
    env.clock.advance(30)
    assert (await env.decide(rid, "rev")).status_code == 200
    text = (await env.get("/metrics", None)).text
    assert 'interlock_requests_submitted_total{decision="require_approval"} 1' in text
    assert 'interlock_requests_submitted_total{decision="allow"} 1' in text
    assert 'interlock_request_transitions_total{state="approved"} 1' in text
    assert 'interlock_time_to_decision_seconds_bucket{le="60"} 1' in text
    assert 'interlock_time_to_decision_seconds_bucket{le="15"} 0' in text
    assert "interlock_pending_requests 0" in text


async def test_wrong_role_says_which_token_it_needs(env: Env) -> None:
    r = await env.post("/v1/batches/b1/decision", "bot", {"verdict": "approve_all"})
    assert_error(r, 403, "wrong_role")
    assert r.json()["error"]["message"] == (
        "this needs a reviewer token; this one is an agent token")


async def test_rate_limit_429_and_replays_still_answered(env: Env, tmp_path: Path) -> None:
    """`actions_per_minute` refuses a new action past the limit; a replay of an idempotency
    key gets its first request all the same (a retry after a lost answer must see it)."""
    text = POLICY.read_text().replace("actions_per_minute: 100000", "actions_per_minute: 3")
    assert "actions_per_minute: 3" in text
    (tmp_path / "policy.yaml").write_text(text)
    env.app.state.gateway.swap_policy(load_policy(tmp_path / "policy.yaml"))
    firsts = [await env.submit(action="read_file", idempotency_key=f"r{n}") for n in range(3)]
    refused = await env.post("/v1/actions", "bot", {"action": "read_file",
                                                    "idempotency_key": "r3"})
    assert_error(refused, 429, "rate_limit")
    # when the oldest of the three leaves the one-minute window
    assert 55 <= int(refused.headers["retry-after"]) <= 60
    assert f"in {refused.headers['retry-after']} s" in refused.json()["error"]["message"]
    assert_error(await env.post("/v1/actions", "bot", {"action": "read_file"}), 429,
                 "rate_limit")
    again = await env.post("/v1/actions", "bot", {"action": "read_file",
                                                  "idempotency_key": "r1"})
    assert again.status_code == 200 and again.json()["id"] == firsts[1]["id"]
    # another agent has a window of its own
    assert (await env.post("/v1/actions", "other", {"action": "read_file"})).status_code == 200


async def test_a_client_gone_before_its_body_is_not_an_error(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    """A load balancer's timeout or a killed agent closes the connection mid-request: nothing
    is stored, nothing is sent, and the log says so in one line, not with a traceback."""
    before = env.store.audit_head()
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/v1/actions", "raw_path": b"/v1/actions",
        "query_string": b"", "root_path": "", "server": ("interlock.test", 80),
        "client": ("127.0.0.1", 5000),
        "headers": [(b"host", b"interlock.test"), (b"content-type", b"application/json"),
                    (b"content-length", b"40"),
                    (b"authorization", f"Bearer {env.tokens['bot']}".encode())],
    }
    with caplog.at_level(logging.INFO):
        await env.app(scope, receive, send)

    assert sent == []
    assert env.store.audit_head() == before
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("disconnected before sending its body" in r.getMessage() for r in caplog.records)



async def test_verify_with_an_anchor_that_is_not_a_hash_is_a_422_not_a_broken_trail(
    env: Env,
) -> None:
    r = await env.get("/v1/audit/verify", "boss", anchor="zz")
    assert_error(r, 422, "invalid_input")
    assert r.json()["error"]["message"] == (
        "an anchor is the 64 hex digits `interlock audit anchor` printed, not `zz`")
    head = (await env.get("/v1/audit/verify", "boss")).json()["head_hash"]
    r = await env.get("/v1/audit/verify", "boss", anchor=f" {head.upper()} ")
    assert r.status_code == 200 and r.json()["ok"], r.text


async def test_an_insights_window_past_a_hundred_years_is_a_422(env: Env) -> None:
    r = await env.get("/v1/insights", "rev", window="99999999999d")
    assert_error(r, 422, "invalid_input")
    assert r.json()["error"]["message"] == "a window is at most 36500d, not `99999999999d`"
