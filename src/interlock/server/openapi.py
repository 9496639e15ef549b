"""`/openapi.json`, generated from the route table and the pydantic models, never by hand.

Every authenticated route documents 401/403 and every route with a body 400/413/422, all in
the one error shape; path and query parameters come from the Endpoint entries.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pydantic.json_schema import models_json_schema

from interlock.server.api import Endpoint
from interlock.server.models import MODELS

_REF = "#/components/schemas/{model}"
_ERROR = {"$ref": "#/components/schemas/ErrorOut"}
_REASONS = {
    400: "Malformed JSON", 401: "No valid Bearer token", 403: "The token may not do this",
    404: "No such request (or not yours)", 409: "A conflict: state moved, stale version, "
    "already claimed, not decided", 410: "The request ended", 413: "Body over the size limit",
    422: "Invalid input", 429: "Pending or rate limit reached",
}


def _error(status: int) -> dict[str, Any]:
    return {"description": _REASONS.get(status, "Error"),
            "content": {"application/json": {"schema": _ERROR}}}


def _operation(ep: Endpoint) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": ep.summary,
        "operationId": ep.handler.__name__ + "_" + ep.method.lower(),
        "tags": list(ep.tags),
    }
    if ep.roles:
        op["description"] = "Token roles: " + ", ".join(ep.roles) + (
            " (admins pass every reviewer check)." if "reviewer" in ep.roles else ".")
        op["security"] = [{"bearer": []}]
    params = [
        {"name": name, "in": "path", "required": True,
         "schema": {"type": "string", "minLength": 1, "maxLength": 200}}
        for name in re.findall(r"{(\w+)}", ep.path)
    ]
    params += [
        {"name": p.name, "in": "query", "required": p.required, "schema": p.schema,
         "description": p.description}
        for p in ep.query
    ]
    if params:
        op["parameters"] = params
    if ep.body is not None:
        op["requestBody"] = {
            "required": ep.handler.__name__ != "cancel",
            "content": {"application/json": {"schema": {"$ref": _REF.format(
                model=ep.body.__name__)}}},
        }
    if ep.response is not None:
        ok = {"description": "OK", "content": {ep.content_type: {"schema": {
            "$ref": _REF.format(model=ep.response.__name__)}}}}
    else:
        ok = {"description": "OK", "content": {ep.content_type: {"schema": {"type": "string"}}}}
    responses: dict[str, Any] = {"200": ok}
    statuses = set(ep.errors)
    if ep.roles:
        statuses |= {401, 403}
    if ep.body is not None:
        statuses |= {400, 413, 422}
    if ep.query or "{" in ep.path:
        statuses.add(422)
    for status in sorted(statuses):
        responses[str(status)] = _error(status)
    op["responses"] = responses
    return op


def document(endpoints: Iterable[Endpoint], *, version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document for `endpoints`."""
    _, schemas = models_json_schema(
        [(m, "validation") for m in MODELS], ref_template=_REF
    )
    paths: dict[str, dict[str, Any]] = {}
    for ep in endpoints:
        paths.setdefault(ep.path, {})[ep.method.lower()] = _operation(ep)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "interlock",
            "version": version,
            "description": "A human-in-the-loop approval gateway for AI agents. Errors are "
            "`{error: {code, message}}`; `/v1` takes `Authorization: Bearer <token>` only.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
