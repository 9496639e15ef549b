"""JSON that Python reads but JSON cannot carry: every body is refused before anything is stored.

NaN, infinities, numbers out of range, overlong integers and lone surrogates once got
into the store and made reading the request back a 500. Each is now a 422 naming where
it sits, and the store is as it was.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from tests.server.conftest import POLICY, Env

from interlock.errors import BadInput
from interlock.gateway import Gateway, authenticate
from interlock.policy import load_policy
from interlock.server.app import ENDPOINTS

pytestmark = pytest.mark.anyio

#: A role's token, for calling each route as someone it lets in.
AS = {"agent": "bot", "reviewer": "rev", "admin": "boss"}


def footprint(env: Env) -> tuple[tuple[int, str], list[Any]]:
    """What any write moves: the audit chain's head, and every request as stored."""
    return env.store.audit_head(), [
        (r.id, r.state, r.version) for r in env.store.list_requests(limit=100_000)]


async def post_raw(env: Env, path: str, who: str, body: bytes) -> httpx.Response:
    headers = {**env.auth(who), "Content-Type": "application/json"}
    return await env.client.post(path, content=body, headers=headers)


def assert_refused(r: httpx.Response, status: int, code: str, *said: str) -> None:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == code, error
    for part in said:
        assert part in error["message"], error


@pytest.mark.parametrize(
    ("args", "said"),
    [
        ('{"a": NaN}', "`NaN` is not a JSON number (at `$.args.a`)"),
        ('{"a": Infinity}', "`Infinity` is not a JSON number (at `$.args.a`)"),
        ('{"a": [1, -Infinity]}', "`-Infinity` is not a JSON number (at `$.args.a[1]`)"),
        ('{"a": 1e999}', "the number at `$.args.a` is too large"),
        ('{"a b": {"c": -1e999}}', 'the number at `$.args["a b"].c` is too large'),
        ('{"a": "\\ud800"}', "the text at `$.args.a` holds a lone surrogate `\\ud800`"),
        ('{"a": ["ok", "\\uDFFF!"]}', "the text at `$.args.a[1]` holds a lone surrogate"),
        ('{"\\udc80": 1}', "a key in `$.args` holds a lone surrogate `\\udc80`"),
        ('{"a": {"\\ud83dx": 1}}', "a key in `$.args.a` holds a lone surrogate `\\ud83d`"),
        ('{"n": ' + "9" * 5000 + "}",
         "a number of 5000 digits is longer than the 4300 interlock reads (at `$.args.n`)"),
    ],
    ids=["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "surrogate", "surrogate-upper",
         "surrogate-key", "surrogate-inner-key", "5000-digits"],
)
async def test_submit_refuses_what_json_cannot_carry_and_stores_nothing(
    env: Env, args: str, said: str
) -> None:
    kept = (await env.submit(action="read_file", args={"p": "x"}))["id"]
    before = footprint(env)
    body = b'{"action": "read_file", "args": ' + args.encode() + b"}"
    assert_refused(await post_raw(env, "/v1/actions", "bot", body), 422, "bad_json", said)
    assert footprint(env) == before
    assert (await env.get(f"/v1/actions/{kept}", "bot")).status_code == 200


async def test_the_same_refusals_anywhere_in_the_action(env: Env) -> None:
    before = footprint(env)
    for body, said in [
        (b'{"action": "read_file", "confidence": NaN}', "(at `$.confidence`)"),
        (b'{"action": "read_\\ud800"}', "the text at `$.action`"),
        (b'{"action": "task.run", "checkpoint": {"s": [Infinity]}}',
         "(at `$.checkpoint.s[0]`)"),
        (b'{"action": "task.run", "context": {"run_id": "\\udbff"}}',
         "the text at `$.context.run_id`"),
    ]:
        assert_refused(await post_raw(env, "/v1/actions", "bot", body), 422, "bad_json", said)
    assert footprint(env) == before


async def test_encoded_surrogates_are_not_utf8_and_not_json(env: Env) -> None:
    # CESU-8 bytes for U+D800: Python's own json.loads(bytes) would let them through.
    before = footprint(env)
    body = b'{"action": "read_file", "args": {"a": "\xed\xa0\x80"}}'
    r = await post_raw(env, "/v1/actions", "bot", body)
    assert_refused(r, 400, "invalid_json", "the body is not valid JSON", "not utf-8 text")
    assert footprint(env) == before


async def test_strict_json_with_escapes_is_taken_and_read_back_unchanged(env: Env) -> None:
    body = (b'{"action": "read_file", "args": {"face": "\\ud83d\\ude00", '
            b'"slash": "\\\\ud800", "big": ' + b"9" * 4300 + b', "f": 1e308}}')
    r = await post_raw(env, "/v1/actions", "bot", body)
    assert r.status_code == 200, r.text
    got = (await env.get(f"/v1/actions/{r.json()['id']}", "bot")).json()
    assert got["action"]["args"] == {"face": "\U0001f600", "slash": "\\ud800",
                                     "big": int("9" * 4300), "f": 1e308}


def _routes() -> list[tuple[str, str]]:
    """(path, who) of every route that reads a JSON body: /v1 ones and AuthZEN's."""
    found = [(e.path.replace("{id}", "x").replace("{batch_id}", "x").replace("{name}", "x"),
              AS[e.roles[0]]) for e in ENDPOINTS if e.body is not None]
    return [*found, ("/access/v1/evaluation", "bot"), ("/access/v1/evaluations", "bot")]


@pytest.mark.parametrize(("path", "who"), _routes())
@pytest.mark.parametrize(
    "body",
    [b'{"note": NaN}', b'{"note": "\\ud800"}', b'{"note": ' + b"1" * 5000 + b"}",
     b'{"note": 1e999}'],
    ids=["NaN", "surrogate", "5000-digits", "1e999"],
)
async def test_every_json_body_goes_through_the_strict_parser(
    env: Env, path: str, who: str, body: bytes
) -> None:
    before = footprint(env)
    assert_refused(await post_raw(env, path, who, body), 422, "bad_json", "at `$.note`")
    assert footprint(env) == before


async def test_edited_args_with_a_lone_surrogate_leave_the_request_pending(env: Env) -> None:
    rid = (await env.submit(action="task.run", args={"n": 100}))["id"]
    before = footprint(env)
    body = b'{"verdict": "approve", "args": {"n": "\\ud800"}}'
    r = await post_raw(env, f"/v1/actions/{rid}/decision", "rev", body)
    assert_refused(r, 422, "bad_json", "the text at `$.args.n`")
    r = await post_raw(env, f"/v1/actions/{rid}/decision", "rev",
                       b'{"verdict": "approve", "args": {"n": NaN}}')
    assert_refused(r, 422, "bad_json", "(at `$.args.n`)")
    assert footprint(env) == before
    assert (await env.get(f"/v1/actions/{rid}", "rev")).json()["state"] == "pending"


async def test_edits_from_any_surface_meet_the_same_limits(env: Env) -> None:
    """The pages, `interlock approve --args` and the terminal channel parse edits themselves
    and hand Python values to the gateway, which checks them like a proposal."""
    rid = (await env.submit(action="task.run", args={"n": 100}))["id"]
    gateway = Gateway(load_policy(POLICY), env.store)
    rev = authenticate(env.store, env.tokens["rev"])
    deep: Any = "leaf"
    for _ in range(40):
        deep = [deep]
    before = footprint(env)
    for args, where in (({"n": float("nan")}, "$.args.n"), ({"n": "\ud800"}, "$.args.n"),
                        ({"deep": deep}, "nested deeper")):
        with pytest.raises(BadInput, match=re.escape(where)):
            gateway.decide(rid, rev, "approve", args=args)
    assert footprint(env) == before
    assert env.store.get(rid).state.value == "pending"
