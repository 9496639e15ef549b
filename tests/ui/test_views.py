"""The reviewer UI through Starlette's test client: sessions, CSRF, escaping, every decision.

Each test signs a reviewer in, submits actions as an agent through the gateway, and reads
or posts the pages as a browser without JavaScript would.
"""

from __future__ import annotations

import json
import re

import httpx
from ui_support import Env, TestClient, csrf_of, sign_in

from interlock.gateway import Principal
from interlock.server import ui_views
from interlock.server.settings import ServerSettings
from interlock.server.ui import CSP
from interlock.server.ui_session import COOKIE
from interlock.store import State

DEPLOY = {"action": "deploy", "environment": "production", "args": {"version": "2.3.1"},
          "reason": "ship the fix", "context": {"plan_step": 2, "plan_total": 5},
          "confidence": 0.82, "alternatives": ["wait for the window"]}


def decide(client: TestClient, rid: str, **fields: str) -> httpx.Response:
    page = client.get(f"/requests/{rid}")
    version = re.search(r'name="version" value="(\d+)"', page.text)
    data = {"csrf": csrf_of(page.text), "version": version.group(1) if version else "",
            **fields}
    return client.post(f"/requests/{rid}/decide", data=data, follow_redirects=False)


# -- sign-in and sessions --------------------------------------------------------------


def test_pages_need_a_session(client: TestClient) -> None:
    response = client.get("/", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?next=")


def test_sign_in_sets_a_lax_httponly_cookie(env: Env, client: TestClient) -> None:
    secret = env.reviewer("alice", "tech-lead")
    page = client.get("/login")
    response = client.post("/login", data={"token": secret, "csrf": csrf_of(page.text)},
                           follow_redirects=False)
    assert response.status_code == 303
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Secure" not in cookie
    assert secret not in cookie
    assert "alice" in client.get("/").text


def test_secure_cookies_when_configured(env: Env) -> None:
    secret = env.reviewer("alice", "tech-lead")
    settings = ServerSettings(secret_key=b"k" * 32, secure_cookies=True)
    with TestClient(env.app(settings), base_url="https://testserver") as c:
        page = c.get("/login")
        assert "Secure" in page.headers["set-cookie"]
        response = c.post("/login", data={"token": secret, "csrf": csrf_of(page.text)},
                          follow_redirects=False)
        assert "Secure" in response.headers["set-cookie"]


def test_wrong_token_and_agent_token_are_refused(env: Env, client: TestClient) -> None:
    _, agent_secret = env.store.create_token(kind="agent", name="bot", actor="test")
    for token, words in (("il_nope", "not valid"), (agent_secret, "Agent tokens")):
        page = client.get("/login")
        response = client.post("/login", data={"token": token, "csrf": csrf_of(page.text)})
        assert response.status_code == 401
        assert words in response.text
    assert client.get("/", follow_redirects=False).status_code == 303


def test_login_link_signs_in_and_drops_the_token(env: Env, client: TestClient) -> None:
    secret = env.reviewer("root", kind="admin")
    response = client.get(f"/login?token={secret}", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    assert secret not in response.headers["location"]
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "root" in client.get("/").text
    bad = client.get("/login?token=il_wrong", follow_redirects=False)
    assert bad.headers["location"] == "/login?error=link"


def test_sign_in_needs_csrf(env: Env, client: TestClient) -> None:
    secret = env.reviewer("alice", "tech-lead")
    client.get("/login")
    response = client.post("/login", data={"token": secret}, follow_redirects=False)
    assert response.status_code == 403
    assert COOKIE in response.headers["set-cookie"]  # a fresh anonymous session, not signed in
    assert client.get("/", follow_redirects=False).status_code == 303


def test_forged_or_revoked_sessions_end(env: Env, client: TestClient) -> None:
    secret = env.reviewer("alice", "tech-lead")
    sign_in(client, secret)
    value = client.cookies[COOKIE]
    # Clear first: `set` beside the server's cookie would add a second one of the same
    # name (other attributes), and which of the two is sent is not defined.
    client.cookies.clear()
    client.cookies.set(COOKIE, value[:-2] + ("AA" if not value.endswith("AA") else "BB"))
    assert client.get("/", follow_redirects=False).status_code == 303
    client.cookies.clear()
    client.cookies.set(COOKIE, value)
    assert client.get("/").status_code == 200
    token = next(t for t in env.store.tokens() if t.name == "alice")
    env.store.revoke_token(token.id, actor="test")
    assert client.get("/", follow_redirects=False).status_code == 303


def test_sign_out(env: Env, client: TestClient) -> None:
    sign_in(client, env.reviewer("alice", "tech-lead"))
    page = client.get("/")
    assert client.post("/logout", data={}).status_code == 403
    response = client.post("/logout", data={"csrf": csrf_of(page.text)},
                           follow_redirects=False)
    assert response.status_code == 303
    assert client.get("/", follow_redirects=False).status_code == 303


def test_next_never_leaves_the_site(env: Env, client: TestClient) -> None:
    secret = env.reviewer("alice", "tech-lead")
    page = client.get("/login")
    response = client.post("/login", data={"token": secret, "csrf": csrf_of(page.text),
                                            "next": "//evil.example/"},
                           follow_redirects=False)
    assert response.headers["location"] == "/"


# -- headers, escaping, previews -------------------------------------------------------


def test_strict_csp_and_no_inline_code(env: Env, client: TestClient) -> None:
    sign_in(client, env.reviewer("alice", "tech-lead"))
    r = env.submit(DEPLOY)
    for path in ("/", f"/requests/{r.id}", "/audit", "/login"):
        response = client.get(path)
        assert response.headers["content-security-policy"] == CSP
        assert "frame-ancestors 'none'" in CSP
        assert "<script>" not in response.text  # only <script src=...>
        assert "style=" not in response.text
        assert "<style" not in response.text
        assert re.search(r"\son\w+=", response.text) is None
    assert '<html lang="en">' in client.get("/").text


def test_hostile_reason_and_preview_show_as_text(env: Env, client: TestClient) -> None:
    sign_in(client, env.reviewer("alice", "tech-lead"))
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    r = env.submit({**DEPLOY, "reason": evil, "alternatives": [evil],
                    "args": {"version": evil},
                    "preview": {"kind": "diff", "content": f"--- a\n+++ b\n+{evil}\n-old"}},
                   agent=f"bot{evil}"[:40])
    page = client.get(f"/requests/{r.id}").text
    assert "<script>alert" not in page
    assert "<img src=x" not in page
    assert "&lt;script&gt;alert(" in page
    assert "In the agent's own words" in page
    assert 'class="add">+&lt;script&gt;' in page
    assert 'class="del">-old' in page
    queue = client.get("/").text
    assert "<script>alert" not in queue


def test_bidi_controls_are_made_visible(env: Env, client: TestClient) -> None:
    sign_in(client, env.reviewer("alice", "tech-lead"))
    r = env.submit({**DEPLOY, "reason": "approve \u202egnorw\u202c now"})
    page = client.get(f"/requests/{r.id}").text
    assert "\u202e" not in page
    assert "&lt;U+202E&gt;" in page


def test_email_preview_is_never_rendered_as_html(env: Env, client: TestClient) -> None:
    sign_in(client, env.reviewer("carol", "comms"))
    r = env.submit({"action": "send_external_email", "recipients": ["ceo@acme.example"],
                    "preview": {"kind": "email", "content": {
                        "from": "bot@us.example", "to": ["ceo@acme.example"],
                        "subject": "Invoice <b>overdue</b>",
                        "body": "Hello,\n<a href='https://phish.example'>pay here</a>",
                        "html": "<p onclick='x()'>Hi</p><iframe src=//x></iframe>"}}})
    page = client.get(f"/requests/{r.id}").text
    assert "<a href='https://phish.example'>" not in page
    assert "&lt;a href=&#39;https://phish.example&#39;&gt;pay here&lt;/a&gt;" in page
    assert "<iframe" not in page and "&lt;iframe" in page
    assert "Invoice &lt;b&gt;overdue&lt;/b&gt;" in page
    assert "<dt>Subject</dt>" in page
    assert "shown as source, never rendered" in page


def test_previews_by_kind(env: Env, client: TestClient) -> None:
    sign_in(client, env.reviewer("alice", "tech-lead"))
    sql = env.submit({"action": "db.delete_rows", "affected_records": 1200,
                      "preview": {"kind": "sql", "content": "DELETE FROM t WHERE id < 5"}})
    page = client.get(f"/requests/{sql.id}").text
    assert '<pre class="code sql"' in page and "DELETE FROM t WHERE id &lt; 5" in page
    assert "1,200 records affected" in page
    js = env.submit({"action": "db.delete_all", "preview": {"kind": "json",
                                                           "content": {"a": [1, 2]}}})
    assert "&#34;a&#34;: [\n    1," in client.get(f"/requests/{js.id}").text


def test_request_page_shows_why_and_the_agent_context(env: Env, client: TestClient) -> None:
    sign_in(client, env.reviewer("alice", "tech-lead"))
    first = env.submit({**DEPLOY, "args": {"version": "2.3.0"}})
    decide(client, first.id, verdict="deny", reason="no rollback plan")
    r = env.submit(DEPLOY)
    page = client.get(f"/requests/{r.id}").text
    order = [page.index(s) for s in ("ops-agent wants to run deploy in production",
                                     "Why it was gated", "rule production-approval",
                                     "Check the rollback plan", "ship the fix",
                                     "step 2 of 5", "82%", "wait for the window",
                                     "The real arguments", "History of", "Approval so far",
                                     "Your decision")]
    assert order == sorted(order)
    assert "no rollback plan" in page  # the history shows the earlier denial's reason
    assert "deploy production" in page  # the confirmation phrase


# -- decisions -------------------------------------------------------------------------


def test_post_without_csrf_is_refused(env: Env, client: TestClient) -> None:
    sign_in(client, env.reviewer("alice", "tech-lead"))
    r = env.submit(DEPLOY)
    response = client.post(f"/requests/{r.id}/decide",
                           data={"verdict": "deny", "reason": "no", "version": "1"})
    assert response.status_code == 403
    assert "expired" in response.text
    other = client.post(f"/requests/{r.id}/decide",
                        data={"verdict": "deny", "reason": "no", "csrf": "forged"})
    assert other.status_code == 403
    assert env.store.get(r.id).state is State.PENDING


def test_approve_with_an_edit(env: Env, client: TestClient) -> None:
    sign_in(client, env.reviewer("dan", "tech-lead"))
    r = env.submit({"action": "db.delete_rows", "args": {"table": "users", "limit": 5000}})
    response = decide(client, r.id, verdict="approve", note="smaller first",
                      args=json.dumps({"table": "users", "limit": 50}))
    assert response.status_code == 303
    after = env.store.get(r.id)
    assert after.state is State.APPROVED
    assert after.final_args == {"table": "users", "limit": 50}
    assert after.action["args"]["limit"] == 5000
    page = client.get(f"/requests/{r.id}?done=approve").text
    assert "Your approval was recorded" in page
    assert "edited by a reviewer" in page


def test_unchanged_args_are_not_an_edit(env: Env, client: TestClient) -> None:
    sign_in(client, env.reviewer("dan", "tech-lead"))
    r = env.submit({"action": "db.delete_rows", "args": {"limit": 5}})
    decide(client, r.id, verdict="approve", args='{\n  "limit": 5\n}')
    assert env.store.votes(r.id)[0].args is None


def test_invalid_args_are_explained(env: Env, client: TestClient) -> None:
    sign_in(client, env.reviewer("dan", "tech-lead"))
    r = env.submit({"action": "db.delete_rows", "args": {"limit": 5}})
    response = decide(client, r.id, verdict="approve", args='{"limit": 5,}')
    assert response.status_code == 422
    assert "not valid JSON" in response.text
    assert "line 1" in response.text
    listed = decide(client, r.id, verdict="approve", args="[1]")
    assert "must be a JSON object" in listed.text
    assert env.store.get(r.id).state is State.PENDING
    page = client.get(f"/requests/{r.id}")
    check = client.post(f"/requests/{r.id}/check-args",
                        data={"csrf": csrf_of(page.text), "args": '{"limit": 7}'})
    assert "You changed" in check.text and "limit" in check.text


def test_deny_requires_a_reason(env: Env, client: TestClient) -> None:
    sign_in(client, env.reviewer("carol", "comms"))
    r = env.submit({"action": "send_external_email", "recipients": ["a@b.example"]})
    response = decide(client, r.id, verdict="deny", reason="   ")
    assert response.status_code == 422
    assert "needs a reason" in response.text
    assert env.store.get(r.id).state is State.PENDING
    decide(client, r.id, verdict="deny", reason="wrong customer")
    denied = env.gateway.get(r.id, Principal(role="agent", name="ops-agent"))
    assert denied.state is State.DENIED and denied.reason == "wrong customer"


def test_request_changes_requires_a_note(env: Env, client: TestClient) -> None:
    sign_in(client, env.reviewer("carol", "comms"))
    r = env.submit({"action": "send_external_email"})
    assert decide(client, r.id, verdict="request_changes").status_code == 422
    decide(client, r.id, verdict="request_changes", changes_note="shorter, please")
    assert env.store.get(r.id).state is State.CHANGES_REQUESTED


def test_typed_confirmation_refused_when_wrong(env: Env, client: TestClient) -> None:
    sign_in(client, env.reviewer("alice", "tech-lead"))
    r = env.submit(DEPLOY)
    wrong = decide(client, r.id, verdict="approve", confirmation="deploy staging")
    assert wrong.status_code == 403
    assert "does not match" in wrong.text
    assert env.store.get(r.id).state is State.PENDING
    right = decide(client, r.id, verdict="approve", confirmation="deploy production")
    assert right.status_code == 303
    assert env.store.get(r.id).state is State.APPROVED


def test_stale_version_asks_to_reload(env: Env, client: TestClient) -> None:
    sign_in(client, env.reviewer("alice", "tech-lead"))
    r = env.submit({"action": "db.delete_rows"})
    page = client.get(f"/requests/{r.id}")
    env.gateway.delegate(r.id, Principal(role="reviewer", name="bob", groups=("tech-lead",)),
                         ["dba"])
    response = client.post(f"/requests/{r.id}/decide", data={
        "csrf": csrf_of(page.text), "version": str(r.version), "verdict": "approve"})
    assert response.status_code == 409
    assert "Reload the page" in response.text
    status = client.get(f"/requests/{r.id}/status?v={r.version}")
    assert "changed since you opened it" in status.text


def test_gateway_refusals_are_readable(env: Env, client: TestClient) -> None:
    sign_in(client, env.reviewer("alice", "tech-lead"))
    r = env.submit({"action": "db.delete_rows"})
    decide(client, r.id, verdict="deny", reason="no")
    page = client.get(f"/requests/{r.id}")
    assert "nothing left to decide" in page.text
    late = client.post(f"/requests/{r.id}/decide", data={
        "csrf": csrf_of(page.text), "verdict": "approve"})
    assert late.status_code == 409
    assert "no longer takes votes" in late.text
    assert "Traceback" not in late.text
    assert client.get("/requests/NOPE").status_code == 404


def test_delegate(env: Env, client: TestClient) -> None:
    sign_in(client, env.reviewer("alice", "tech-lead"))
    r = env.submit({"action": "db.delete_rows"})
    page = client.get(f"/requests/{r.id}")
    response = client.post(f"/requests/{r.id}/delegate", data={
        "csrf": csrf_of(page.text), "version": str(r.version), "to": "dba, user:erin"},
        follow_redirects=False)
    assert response.status_code == 303
    stage = env.store.get(r.id).progress["gates"][0]["stages"][0]
    assert stage["extra"] == ["dba", "user:erin"]


def test_delegate_names_only_whom_the_rule_names(env: Env, client: TestClient) -> None:
    sign_in(client, env.reviewer("alice", "tech-lead"))
    r = env.submit({"action": "db.delete_rows"})
    page = client.get(f"/requests/{r.id}")
    assert "this request's rules name dba, tech-lead, user:erin" in page.text
    assert '<option value="user:erin">' in page.text
    response = client.post(f"/requests/{r.id}/delegate", data={
        "csrf": csrf_of(page.text), "version": str(r.version), "to": "marketing"},
        follow_redirects=False)
    assert response.status_code == 422
    assert "marketing" in response.text and "dba" in response.text  # what it may name
    assert env.store.get(r.id).progress["gates"][0]["stages"][0].get("extra", []) == []


def test_outsiders_get_a_read_only_page(env: Env, client: TestClient) -> None:
    sign_in(client, env.reviewer("mallory", "marketing"))
    r = env.submit(DEPLOY)
    page = client.get(f"/requests/{r.id}").text
    assert "ship the fix" in page
    assert "You can read this request but not decide it" in page
    assert 'action="/requests/' not in page
    assert "Nothing waits for you" in client.get("/").text
    response = decide(client, r.id, verdict="deny", reason="mine now")
    assert response.status_code == 403
    assert env.store.get(r.id).state is State.PENDING


def test_queue_lists_mine_oldest_first(env: Env, client: TestClient) -> None:
    sign_in(client, env.reviewer("alice", "tech-lead"))
    first = env.submit({"action": "db.delete_rows"})
    env.submit({"action": "send_external_email"})
    second = env.submit(DEPLOY)
    page = client.get("/").text
    assert page.index(first.id) < page.index(second.id)
    assert "high risk" in page and "1 other pending request waits" in page
    fragment = client.get("/fragments/queue", headers={"HX-Request": "true"})
    assert first.id in fragment.text and "<html" not in fragment.text


# -- batches and audit -----------------------------------------------------------------


def test_batch_approve_all_and_each(env: Env, client: TestClient) -> None:
    sign_in(client, env.reviewer("sam", "support"))
    items = [env.submit({"action": "refund", "batch_id": "b1", "args": {"n": i}})
             for i in range(3)]
    page = client.get("/batches/b1")
    assert page.status_code == 200 and "3 you may decide now" in page.text
    each = client.post("/batches/b1/decide", data={
        "csrf": csrf_of(page.text), "agent": "ops-agent", "verdict": "each",
        f"item:{items[0].id}": "deny", "note": "duplicate"})
    assert "1 decided" in each.text
    assert env.store.get(items[0].id).state is State.DENIED
    done = client.post("/batches/b1/decide", data={
        "csrf": csrf_of(page.text), "agent": "ops-agent", "verdict": "approve_all"})
    assert "2 decided, 1 skipped" in done.text
    assert {env.store.get(i.id).state for i in items[1:]} == {State.APPROVED}
    refused = client.post("/batches/b1/decide", data={
        "csrf": csrf_of(page.text), "agent": "ops-agent", "verdict": "reject_all"})
    assert refused.status_code == 422 and "needs a reason" in refused.text


def test_audit_filters(env: Env, client: TestClient) -> None:
    sign_in(client, env.reviewer("alice", "tech-lead"))
    r = env.submit({"action": "db.delete_rows"}, agent="cleaner")
    env.submit({"action": "db.delete_rows"}, agent="other")
    decide(client, r.id, verdict="deny", reason="<b>no</b>")
    by_actor = client.get("/audit?actor=alice").text
    assert "reviewer:alice" in by_actor and "&lt;b&gt;no&lt;/b&gt;" in by_actor
    by_agent = client.get("/audit?agent=cleaner").text
    assert r.id[-8:] in by_agent and "agent:other" not in by_agent
    by_request = client.get(f"/audit?request={r.id}").text
    assert "state.denied" in by_request or "denied" in by_request


def test_history_is_the_last_few_newest_first(env: Env) -> None:
    made = [env.submit({"action": "db.delete_rows", "args": {"n": i}}) for i in range(7)]
    env.submit({"action": "send_external_email"})
    shown = ui_views.history(env.store, made[-1], count=3, page=2)
    assert [r.id for r in shown] == [made[5].id, made[4].id, made[3].id]
    assert ui_views.history(env.store, made[0]) == []


def test_resolve_a_suggested_action(env: Env, client: TestClient) -> None:
    # a suggest rule names no approvers: the policy's default approvers (on-call) resolve
    sign_in(client, env.reviewer("alice", "on-call"))
    r = env.submit({"action": "iam.grant_role", "args": {"role": "owner"}})
    assert r.state is State.SUGGESTED
    page = client.get(f"/requests/{r.id}")
    assert "a person carries this out" in page.text
    response = client.post(f"/requests/{r.id}/resolve", data={
        "csrf": csrf_of(page.text), "status": "done", "note": "granted by hand"},
        follow_redirects=False)
    assert response.status_code == 303
    assert env.store.get(r.id).state is State.DONE


def test_stage_progress_and_votes(env: Env, client: TestClient) -> None:
    r = env.submit({"action": "send_payment", "amount": 25000, "currency": "EUR",
                    "recipients": ["acme"]})
    env.gateway.decide(r.id, Principal(role="reviewer", name="fin1", groups=("finance",)),
                       "approve", note="invoice matches")
    sign_in(client, env.reviewer("fin2", "finance"))
    page = client.get(f"/requests/{r.id}").text
    assert "amount 25,000 EUR; to acme" in page
    assert "<strong>finance</strong>: 1 of 2 from finance" in page
    assert "approved by fin1" in page and "invoice matches" in page
    assert "<strong>security</strong>: 0 of 1 from security" in page
    decide(client, r.id, verdict="approve")
    after = client.get(f"/requests/{r.id}").text
    assert "<strong>finance</strong>: 2 of 2" in after
    assert "You can read this request but not decide it" in after  # security's turn now


# -- approve and remember ----------------------------------------------------------------


def test_approve_and_remember_from_the_page(env: Env, client: TestClient) -> None:
    sign_in(client, env.reviewer("alice", "tech-lead"))
    first = env.submit({"action": "db.delete_rows", "args": {"table": "tmp_1"}})
    assert "Approve and remember" in client.get(f"/requests/{first.id}").text
    bad = decide(client, first.id, verdict="approve", remember="1",
                 remember_scope="agent_action", remember_args="{table: tmp")
    assert bad.status_code == 422
    assert "The argument pattern:" in bad.text
    assert env.store.get(first.id).state is State.PENDING  # nothing decided, nothing kept
    done = decide(client, first.id, verdict="approve", remember="1",
                  remember_scope="agent_action", remember_args='{"table": "tmp_*"}')
    assert done.status_code == 303
    assert env.store.get(first.id).state is State.APPROVED
    assert env.submit({"action": "db.delete_rows",
                       "args": {"table": "tmp_2"}}).state is State.ALLOWED
    assert env.submit({"action": "db.delete_rows",
                       "args": {"table": "users"}}).state is State.PENDING
    other_agent = env.submit({"action": "db.delete_rows", "args": {"table": "tmp_3"}},
                             agent="another-agent")
    assert other_agent.state is State.PENDING  # the grant is this agent's alone


def test_typed_confirmation_is_never_remembered(env: Env, client: TestClient) -> None:
    sign_in(client, env.reviewer("alice", "tech-lead"))
    r = env.submit({"action": "deploy", "environment": "production"})
    assert "Approve and remember" not in client.get(f"/requests/{r.id}").text


def test_a_pause_is_shown_to_reviewers_where_it_matters(env: Env, client: TestClient) -> None:
    """The queue names every kill switch that is on; a request of a paused agent says it can
    still run once approved (a pause denies new actions only). The reason is escaped."""
    sign_in(client, env.reviewer("alice", "tech-lead"))
    waiting = env.submit(DEPLOY)
    other = env.submit(DEPLOY, agent="quiet-agent")
    assert "paused" not in client.get("/").text
    env.store.pause(agent="ops-agent", reason="incident <b>7</b>", actor="admin:root")

    queue = client.get("/").text
    assert "Agent <code>ops-agent</code> is paused" in queue
    assert "incident &lt;b&gt;7&lt;/b&gt;" in queue and "<b>7</b>" not in queue
    assert "admin:root" in queue
    page = client.get(f"/requests/{waiting.id}").text
    assert "This agent is paused" in page and "approved, it can still run" in page
    assert "This agent is paused" not in client.get(f"/requests/{other.id}").text

    env.store.pause(agent=None, reason="all stop", actor="admin:root")
    assert "Every agent is paused" in client.get("/").text
    assert "This agent is paused" in client.get(f"/requests/{other.id}").text
    env.store.unpause(agent=None, actor="admin:root")
    env.store.unpause(agent="ops-agent", actor="admin:root")
    assert "paused" not in client.get("/").text
    assert "This agent is paused" not in client.get(f"/requests/{waiting.id}").text
