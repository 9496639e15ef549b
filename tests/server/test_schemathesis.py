"""Property-based requests generated from `/openapi.json` (schemathesis), with valid tokens:
no 5xx, and every answer matches the documented status codes, content types and schemas.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from interlock.gateway import Gateway
from interlock.policy import load_policy
from interlock.server.app import create_app
from interlock.server.settings import ServerSettings
from interlock.store import open_store

_DIR = tempfile.TemporaryDirectory(prefix="interlock-schemathesis-")
_STORE = open_store(f"sqlite:///{Path(_DIR.name) / 'interlock.db'}")
_APP = create_app(Gateway(load_policy(Path(__file__).with_name("policy.yaml")), _STORE),
                  ServerSettings(), background=False)
_TOKENS = {
    kind: _STORE.create_token(kind=kind, name=f"st-{kind}", groups=("tech-lead", "on-call"),
                              actor="test")[1]
    for kind in ("agent", "reviewer")
}
schema = schemathesis.openapi.from_asgi("/openapi.json", _APP)


def _token_for(method: str, path: str) -> str:
    agent_only = (path in ("/v1/actions",) and method == "POST") or path.endswith(
        ("/wait", "/claim", "/outcome", "/cancel"))
    return _TOKENS["agent" if agent_only or path == "/v1/evaluate" else "reviewer"]


@schema.parametrize()
@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_api_conforms(case: Any) -> None:
    if case.path.endswith("/events"):
        return  # a stream on a live request never ends; covered by test_waiting
    case.headers = {**(case.headers or {}),
                    "Authorization": f"Bearer {_token_for(case.method, case.path)}"}
    response = case.call()
    assert response.status_code < 500, response.text
    case.validate_response(response, checks=[
        status_code_conformance, content_type_conformance, response_schema_conformance,
    ])
