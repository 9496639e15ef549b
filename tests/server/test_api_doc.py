"""docs/api.md against the app: every route it serves is documented, every route the page
names is served, and the page's curl walk-through runs and answers as the page shows.

The walk-through is run, not copied: its policy block is the policy, `interlock token
create` lines run the real command in the same directory, and each curl line is sent to the
app in-process; a JSON block after a command is what that command must answer.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Route

from interlock.cli import main as cli
from interlock.gateway import Gateway
from interlock.notify import ENV_VAR
from interlock.policy import load_policy
from interlock.server import ui
from interlock.server.app import create_app, endpoints
from interlock.server.settings import ServerSettings
from interlock.store import open_store

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
WALK = "## A walk-through with curl"
#: Answer fields whose values differ from run to run: the page's are examples.
VARYING = frozenset({
    "id", "digest", "link", "message", "policy_hash", "created_at", "updated_at",
    "decided_at", "deadline", "ttl_expires_at", "lease_expires_at", "at", "hash", "prev_hash",
})
METHOD_PATH = re.compile(r"`(GET|POST|PUT|PATCH|DELETE) (/[^`\s?]*)")


def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


# -- the route table against the page ------------------------------------------------------

def served(routes: Iterable[BaseRoute]) -> set[tuple[str, str]]:
    """(method, path) of every route; HEAD is GET's twin."""
    return {(method, route.path) for route in routes if isinstance(route, Route)
            for method in route.methods or () if method != "HEAD"}


def api_routes(app: Starlette) -> set[tuple[str, str]]:
    """Everything the app serves except the reviewer UI's pages."""
    ctx = app.state.ctx
    return served(app.routes) - served(ui.routes(ctx.gateway, ctx.settings))


def undocumented(routes: Iterable[tuple[str, str]], text: str) -> set[tuple[str, str]]:
    """Routes the page never names as `METHOD /path`."""
    named = set(METHOD_PATH.findall(text))
    return {r for r in routes if r not in named}


def _pattern(path: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\{\w+\\}", r"[^/]+", re.escape(path)) + "$")


def unserved(text: str, routes: set[tuple[str, str]]) -> set[str]:
    """`METHOD /path` mentions, and `/v1/...` paths in commands, that match no route."""
    patterns = [(m, _pattern(p)) for m, p in routes]
    bad = {f"{m} {p}" for m, p in METHOD_PATH.findall(text)
           if not any(m == rm and rp.match(p) for rm, rp in patterns)}
    for path in re.findall(r"(?<!/access)(/v1/[^\s\"'`?)]*)", text):
        concrete = re.sub(r"\$\{?\w+\}?", "x", path)
        if not any(rp.match(concrete) or rp.match(path) for _, rp in patterns):
            bad.add(path)
    return bad


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Starlette]:
    """The whole app, the Slack route included (it exists only when Slack is configured)."""
    notify = tmp_path / "notify.yaml"
    notify.write_text("slack:\n  signing_secret: not-a-real-secret\n  users: {}\n")
    monkeypatch.setenv(ENV_VAR, str(notify))
    store = open_store(f"sqlite:///{tmp_path / 'routes.db'}")
    policy = Path(__file__).with_name("policy.yaml")
    yield create_app(Gateway(load_policy(policy), store), ServerSettings(), background=False)
    store.close()


def test_every_route_is_documented(app: Starlette) -> None:
    routes = api_routes(app)
    assert {(ep.method, ep.path) for ep in endpoints()} <= routes
    assert ("GET", "/openapi.json") in routes
    missing = undocumented(routes, doc_text())
    assert missing == set(), f"routes docs/api.md does not name as `METHOD /path`: {missing}"


def test_a_route_left_out_is_caught(app: Starlette) -> None:
    """The check above can fail: the page without one route's mentions misses that route."""
    text = doc_text().replace("`POST /v1/actions/{id}/claim`", "")
    assert undocumented(api_routes(app), text) == {("POST", "/v1/actions/{id}/claim")}
    assert "POST /v1/actions/{id}/approve" in unserved("`POST /v1/actions/{id}/approve`",
                                                       api_routes(app))
    assert unserved('curl "$URL/v1/action/$ID"', api_routes(app)) == {"/v1/action/$ID"}


def test_every_route_the_page_names_exists(app: Starlette) -> None:
    bad = unserved(doc_text(), api_routes(app))
    assert bad == set(), f"docs/api.md names routes the app does not serve: {bad}"


# -- the walk-through ----------------------------------------------------------------------

@dataclass(kw_only=True)
class Step:
    """One sh block of the walk-through, and the JSON block that follows it, if any."""

    script: str
    answer: Any = None


def walk_through(text: str) -> tuple[str, list[Step]]:
    """The section's policy (its yaml block) and its steps, in order."""
    start = text.index(WALK)
    end = text.find("\n## ", start + len(WALK))
    section = text[start:] if end < 0 else text[start:end]
    blocks = re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S)
    policy = next(body for lang, body in blocks if lang == "yaml")
    steps: list[Step] = []
    for lang, body in blocks:
        if lang == "sh":
            steps.append(Step(script=body))
        elif lang == "json":
            assert steps and steps[-1].answer is None, "a JSON block follows one sh block"
            steps[-1].answer = json.loads(body)
    return policy, steps


def commands(script: str) -> list[str]:
    """Shell lines with continuations joined; blank and comment lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", script)
    return [line.strip() for line in joined.splitlines()
            if line.strip() and not line.strip().startswith("#")]


def expand(line: str, env: dict[str, str]) -> str:
    """`$NAME` and `${NAME}` replaced as the shell would: not inside single quotes."""
    out: list[str] = []
    single = double = False
    i = 0
    while i < len(line):
        c = line[i]
        if c == "'" and not double:
            single = not single
        elif c == '"' and not single:
            double = not double
        elif c == "$" and not single:
            m = re.match(r"\$(?:\{(\w+)\}|(\w+))", line[i:])
            if m:
                name = m.group(1) or m.group(2)
                assert name in env, f"`${name}` is used before it is set"
                out.append(env[name])
                i += m.end()
                continue
        out.append(c)
        i += 1
    return "".join(out)


@dataclass(kw_only=True)
class Curl:
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None


def parse_curl(words: list[str]) -> Curl:
    assert words[0] == "curl", words
    method: str | None = None
    url: str | None = None
    headers: dict[str, str] = {}
    body: str | None = None
    it = iter(words[1:])
    for word in it:
        if word in ("-s", "-N", "-sS", "--silent"):
            continue
        if word == "-X":
            method = next(it)
        elif word == "-H":
            name, _, value = next(it).partition(":")
            headers[name.strip()] = value.strip()
        elif word in ("-d", "--data"):
            body = next(it)
        elif word.startswith("-"):
            raise AssertionError(f"the walk-through uses a curl option the test does not know: "
                                 f"{word}")
        else:
            assert url is None, f"two URLs in one curl: {words}"
            url = word
    assert url is not None, words
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return Curl(method=method or ("POST" if body is not None else "GET"), path=path,
                headers=headers, body=body)


def jq(value: Any, expr: str) -> str:
    """`jq -r .a.b` over a parsed answer."""
    assert re.fullmatch(r"(\.\w+)+", expr), f"the test reads jq paths only, not `{expr}`"
    for key in expr.split(".")[1:]:
        value = value[key]
    return value if isinstance(value, str) else json.dumps(value)


def check_answer(shown: Any, got: httpx.Response, where: str) -> None:
    """The page's answer is a part of the real one: its fields exist, with its values unless
    they vary from run to run; an error shown means that error (and a success, a 2xx)."""
    body = got.json()
    if isinstance(shown, dict) and "error" in shown:
        assert got.status_code >= 400, f"{where}: {got.status_code} {got.text}"
    else:
        assert got.status_code < 300, f"{where}: {got.status_code} {got.text}"
    same(shown, body, where)


def same(shown: Any, real: Any, where: str) -> None:
    if isinstance(shown, dict):
        assert isinstance(real, dict), f"{where}: {real!r}"
        for key, value in shown.items():
            assert key in real, f"{where}: the page shows `{key}`, the answer has none: {real}"
            if key not in VARYING:
                same(value, real[key], f"{where} `{key}`")
    else:
        assert shown == real, f"{where}: the page shows {shown!r}, the answer is {real!r}"


class Runner:
    """Runs the walk-through's lines against the app, the way a shell would run them."""

    def __init__(self, client: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]) -> None:
        self.client = client
        self.capsys = capsys
        self.env: dict[str, str] = {}
        self.background: list[tuple[asyncio.Task[httpx.Response], Any]] = []
        self.last: httpx.Response | None = None

    async def curl(self, words: list[str]) -> httpx.Response:
        c = parse_curl(words)
        content = None if c.body is None else c.body.encode()
        return await self.client.request(c.method, c.path, headers=c.headers, content=content)

    def interlock(self, words: list[str]) -> str:
        assert words[:3] == ["interlock", "token", "create"], (
            f"the test runs `interlock token create` only, not {words}")
        self.capsys.readouterr()
        assert cli(words[1:]) == 0, self.capsys.readouterr().err
        return self.capsys.readouterr().out.strip()

    async def run(self, step: Step, where: str) -> None:
        lines = commands(step.script)
        answered = False
        for n, line in enumerate(lines):
            last = n == len(lines) - 1
            if line == "interlock serve":
                continue  # the app under test is that server
            if line == "wait":
                assert self.background, f"{where}: `wait` with nothing in the background"
                tasks, self.background = self.background, []
                for task, _ in tasks:
                    self.last = await asyncio.wait_for(task, 10)
                answered = True
                continue
            m = re.fullmatch(r"(\w+)=\$\((.*)\)", line)
            if m:
                name, inner = m.groups()
                piped = re.fullmatch(r"(curl .*) \| jq -r (\S+)", inner)
                if piped:
                    r = await self.curl(shlex.split(expand(piped.group(1), self.env)))
                    assert r.status_code < 300, f"{where}: {line}: {r.status_code} {r.text}"
                    self.env[name] = jq(r.json(), piped.group(2))
                    self.last = r
                    answered = last  # the JSON block shows what curl printed before jq
                else:
                    self.env[name] = self.interlock(shlex.split(expand(inner, self.env)))
                continue
            m = re.fullmatch(r"(\w+)=(\S+)", line)
            if m:
                self.env[m.group(1)] = expand(m.group(2), self.env)
                continue
            if line.startswith("curl "):
                words = shlex.split(expand(line, self.env))
                if words[-1] == "&":
                    task = asyncio.create_task(self.curl(words[:-1]))
                    await asyncio.sleep(0.05)
                    assert not task.done(), f"{where}: the background call answered at once"
                    self.background.append((task, None))
                    continue
                self.last = await self.curl(words)
                answered = last
                continue
            raise AssertionError(f"{where}: a line the test cannot run: {line}")
        if step.answer is not None:
            assert answered and self.last is not None, (
                f"{where}: a JSON block follows a block whose last line answers nothing")
            check_answer(step.answer, self.last, where)


@pytest.fixture
async def walk_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[
        tuple[httpx.AsyncClient, list[Step]]]:
    """The server as `interlock serve` runs it in the walk-through's directory."""
    policy_text, steps = walk_through(doc_text())
    monkeypatch.chdir(tmp_path)
    (tmp_path / "interlock.yaml").write_text(policy_text)
    store = open_store("sqlite:///./interlock.db")
    app = create_app(Gateway(load_policy(tmp_path / "interlock.yaml"), store), ServerSettings(),
                     background=False)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://127.0.0.1:8765") as client:
            yield client, steps
    finally:
        store.close()


@pytest.mark.anyio
async def test_the_walk_through_runs(walk_app: tuple[httpx.AsyncClient, list[Step]],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    client, steps = walk_app
    assert len(steps) >= 8, "the walk-through is there, with its steps"
    runner = Runner(client, capsys)
    for i, step in enumerate(steps):
        await runner.run(step, f"walk-through block {i + 1}")
    assert not runner.background, "a background call was never waited for"
    shown = [s.answer for s in steps if s.answer is not None]
    assert any(isinstance(a, dict) and a.get("state") == "succeeded" for a in shown)
    # The requests the page made really went submit -> approved -> executing -> succeeded.
    rid = runner.env["ID"]
    r = await client.get(f"/v1/actions/{rid}",
                         headers={"Authorization": f"Bearer {runner.env['ANN']}"})
    events = [e["event"] for e in r.json()["timeline"]]
    assert events == ["submitted", "state.pending", "vote", "state.approved",
                      "state.executing", "state.succeeded"]


def test_the_walk_through_checker_can_fail() -> None:
    """An answer the page shows wrongly is caught."""
    real = httpx.Response(200, json={"state": "approved", "version": 2, "id": "x"})
    check_answer({"state": "approved", "id": "another"}, real, "ok")
    for wrong in ({"state": "pending"}, {"status": "approved"}, {"error": {"code": "x"}}):
        with pytest.raises(AssertionError):
            check_answer(wrong, real, "wrong")
    assert expand("""'{"v": '"$V"', "w": "$V"}'""", {"V": "2"}) == """'{"v": '"2"', "w": "$V"}'"""
