"""AuthZEN endpoints: the spec's request and response shapes, the decision mapping, subjects
pinned to the token, batches, resuming an approved request, and the docs page's example."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from tests.server.servers import cli, serving

from interlock.gateway import Gateway
from interlock.policy import load_policy
from interlock.server.app import create_app
from interlock.server.settings import ServerSettings
from interlock.store import open_store

DOC = Path(__file__).parents[2] / "docs" / "integrations" / "authzen.md"
POLICY = """\
version: 1
defaults: {decision: allow, approvers: [finance]}
rules:
  - name: large-refunds
    match: {action: refund}
    when: "amount > 100"
    decision: require_approval
  - name: no-deletes
    match: {action: delete_account}
    decision: deny
  - name: people-only
    match: {action: close_books}
    decision: suggest
"""


class Env:
    def __init__(self, tmp: Path) -> None:
        (tmp / "policy.yaml").write_text(POLICY)
        self.store = open_store(f"sqlite:///{tmp / 'az.db'}")
        self.gateway = Gateway(load_policy(tmp / "policy.yaml"), self.store)
        _, self.bot = self.store.create_token(kind="agent", name="billing-bot", actor="test")
        _, self.rev = self.store.create_token(kind="reviewer", name="fin", groups=("finance",),
                                              actor="test")
        app = create_app(self.gateway, ServerSettings(public_url="https://il.example"),
                         background=False)
        self.http = TestClient(app)

    def post(self, path: str, body: Any, token: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {token or self.bot}"}
        return self.http.post(path, json=body, headers=headers)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    with e.http:
        yield e
    e.store.close()


def evaluation(name: str, amount: float = 10, **extra: Any) -> dict[str, Any]:
    # The shape of AuthZEN 1.0's evaluation request example: subject, action, resource, context.
    return {
        "subject": {"type": "agent", "id": "billing-bot", "properties": {"team": "billing"}},
        "action": {"name": name},
        "resource": {"type": "invoice", "id": "inv-1", "properties": {"amount": amount}},
        "context": {"time": "1985-10-26T01:22-07:00", **extra},
    }


def test_allow_is_true_and_the_response_has_the_spec_shape(env: Env) -> None:
    r = env.post("/access/v1/evaluation", evaluation("refund"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"decision", "context"}
    assert body["decision"] is True
    ctx = body["context"]
    assert ctx["decision"] == "allow" and ctx["state"] == "succeeded"
    assert ctx["args"] == {"amount": 10, "resource": {"type": "invoice", "id": "inv-1"}}
    stored = env.store.get(ctx["request_id"])
    assert stored.action["context"]["time"] == "1985-10-26T01:22-07:00"
    assert stored.action["context"]["subject_properties"] == {"team": "billing"}


@pytest.mark.parametrize(("name", "decision"), [("delete_account", "deny"),
                                                ("close_books", "suggest")])
def test_deny_and_suggest_are_false_with_reasons(env: Env, name: str, decision: str) -> None:
    body = env.post("/access/v1/evaluation", evaluation(name)).json()
    assert body["decision"] is False
    assert body["context"]["decision"] == decision
    assert body["context"]["reasons"] and body["context"]["reason_user"]["en"]


def test_require_approval_is_false_with_the_request_and_link_then_true_once(env: Env) -> None:
    body = env.post("/access/v1/evaluation", evaluation("refund", 5000)).json()
    assert body["decision"] is False
    ctx = body["context"]
    rid = ctx["request_id"]
    assert ctx["decision"] == "require_approval" and ctx["state"] == "pending"
    assert ctx["link"] == f"https://il.example/requests/{rid}"
    # Still pending: evaluating again with the id says so and creates nothing new.
    again = env.post("/access/v1/evaluation",
                     evaluation("refund", 5000, interlock_request_id=rid)).json()
    assert again["decision"] is False and again["context"]["request_id"] == rid
    r = env.http.post(f"/v1/actions/{rid}/decision", json={"verdict": "approve",
                      "args": {"amount": 4000}}, headers={"Authorization": f"Bearer {env.rev}"})
    assert r.status_code == 200, r.text
    done = env.post("/access/v1/evaluation",
                    evaluation("refund", 5000, interlock_request_id=rid)).json()
    assert done["decision"] is True and done["context"]["args"] == {"amount": 4000}
    once = env.post("/access/v1/evaluation",
                    evaluation("refund", 5000, interlock_request_id=rid)).json()
    assert once["decision"] is False


def test_an_agent_cannot_evaluate_as_another_subject(env: Env) -> None:
    body = evaluation("refund")
    body["subject"]["id"] = "someone-else"
    r = env.post("/access/v1/evaluation", body)
    assert r.status_code == 403 and r.json()["error"]["code"] == "subject_mismatch"
    batch = {"action": {"name": "refund"},
             "resource": {"type": "invoice", "id": "x"},
             "evaluations": [{}, {"subject": {"type": "agent", "id": "someone-else"}}]}
    r = env.post("/access/v1/evaluations", batch)
    assert r.status_code == 403
    assert env.store.list_requests(agent="billing-bot", limit=10) == []  # nothing written


def test_subject_may_be_absent_and_tokens_are_required(env: Env) -> None:
    body = evaluation("refund")
    del body["subject"]
    assert env.post("/access/v1/evaluation", body).json()["decision"] is True
    r = env.http.post("/access/v1/evaluation", json=body)
    assert r.status_code == 401
    r = env.post("/access/v1/evaluation", body, token=env.rev)
    assert r.status_code == 403


def test_malformed_requests_are_4xx(env: Env) -> None:
    assert env.post("/access/v1/evaluation", {"action": {"name": "x"}}).status_code == 422
    r = env.http.post("/access/v1/evaluation", content=b"{nope",
                      headers={"Authorization": f"Bearer {env.bot}"})
    assert r.status_code == 400


def test_evaluations_batch_defaults_and_semantics(env: Env) -> None:
    # AuthZEN 1.0's evaluations example: top-level defaults, items override them.
    batch: dict[str, Any] = {
        "subject": {"type": "agent", "id": "billing-bot"},
        "action": {"name": "refund"},
        "context": {"time": "2024-05-31T15:22-07:00"},
        "evaluations": [
            {"resource": {"type": "invoice", "id": "a", "properties": {"amount": 5}}},
            {"resource": {"type": "invoice", "id": "b", "properties": {"amount": 500}}},
            {"action": {"name": "delete_account"},
             "resource": {"type": "account", "id": "c"}},
        ],
    }
    body = env.post("/access/v1/evaluations", batch).json()
    assert [e["decision"] for e in body["evaluations"]] == [True, False, False]
    assert [e["context"]["decision"] for e in body["evaluations"]] == [
        "allow", "require_approval", "deny"]
    batch["options"] = {"evaluations_semantic": "deny_on_first_deny"}
    body = env.post("/access/v1/evaluations", batch).json()
    assert [e["decision"] for e in body["evaluations"]] == [True, False]
    batch["options"] = {"evaluations_semantic": "permit_on_first_permit"}
    assert len(env.post("/access/v1/evaluations", batch).json()["evaluations"]) == 1
    single = {k: v for k, v in batch.items() if k not in ("evaluations", "options")}
    single["resource"] = {"type": "invoice", "id": "z", "properties": {"amount": 1}}
    assert env.post("/access/v1/evaluations", single).json()["decision"] is True


def test_the_docs_example_runs_against_a_real_server(tmp_path: Path) -> None:
    text = DOC.read_text()
    policy = re.search(r"```yaml\n(.*?)```", text, re.S)
    example = re.search(r"<!-- example: authzen -->\n```python\n(.*?)```", text, re.S)
    assert policy and example
    (tmp_path / "policy.yaml").write_text(policy.group(1))
    db = f"sqlite:///{tmp_path / 'doc.db'}"
    with serving(tmp_path, "--policy", "policy.yaml", "--db", db) as server:
        token = cli("token", "create", "--agent", "billing-bot", "--db", db,
                    cwd=tmp_path).stdout.strip()
        (tmp_path / "example.py").write_text(example.group(1))
        done = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, text=True,
                              capture_output=True, timeout=60,
                              env={**os.environ, "INTERLOCK_URL": server.url,
                                   "INTERLOCK_TOKEN": token})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "True allow"
    assert lines[1] == "True allow -"
    assert lines[2].startswith("False require_approval /requests/")
