"""`interlock demo`: a server on a throwaway database plus simulated agents, to review at once.

The agents speak only the HTTP API with their own tokens (submit, wait, claim, outcome), so
what a reviewer sees is exactly what a real agent would put in front of them.
"""

from __future__ import annotations

import contextlib
import random
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
import uvicorn
from rich.console import Console
from rich.text import Text

from interlock.cli.review import Api, ServerRefused, Unreachable
from interlock.cli.serve import _first_admin, listen, starter_policy
from interlock.errors import InterlockError
from interlock.gateway import Gateway
from interlock.policy import Policy, load_policy
from interlock.server.settings import ServerSettings
from interlock.server.ui_views import visible
from interlock.store import Store, open_store

#: Requests a simulated agent waits on at once before it stops proposing more.
MAX_WAITING = 12
#: Seconds one `/wait` call asks for; short, so a stopping server never waits long on one.
WAIT_SLICE = 2.0

Make = Callable[[random.Random], dict[str, Any]]


# --- what the simulated agents propose ------------------------------------------------------

SERVICES = ("checkout", "search-api", "billing", "notifications", "auth-gateway")
CUSTOMERS = ("acme.io", "globex.com", "initech.net", "umbrella.org", "hooli.xyz")


def _deploy(rng: random.Random) -> dict[str, Any]:
    service = rng.choice(SERVICES)
    old, new = rng.randint(40, 90), rng.randint(91, 140)
    diff = (
        f"--- a/deploy/{service}.yaml\n+++ b/deploy/{service}.yaml\n@@ -3,7 +3,7 @@\n"
        f" service: {service}\n-image: registry.internal/{service}:1.{old}.0\n"
        f"+image: registry.internal/{service}:1.{new}.0\n replicas: 6\n"
        f"-max_surge: 1\n+max_surge: 2\n"
    )
    return {
        "action": "deploy", "environment": "production",
        "args": {"service": service, "version": f"1.{new}.0", "strategy": "rolling"},
        "reason": f"Ship {service} 1.{new}.0: fixes the timeout regression reported in "
                  f"INC-{rng.randint(1000, 9999)}; staging has been green for 2 hours.",
        "context": {"run_id": f"release-{service}", "plan_step": 3, "plan_total": 4,
                    "history": ["built image", "deployed to staging", "ran smoke tests"]},
        "confidence": round(rng.uniform(0.8, 0.97), 2),
        "alternatives": ["wait for tonight's change window", "canary to 5% of traffic first"],
        "preview": {"kind": "diff", "content": diff},
    }


def _deploy_staging(rng: random.Random) -> dict[str, Any]:
    service = rng.choice(SERVICES)
    return {
        "action": "deploy", "environment": "staging",
        "args": {"service": service, "version": f"1.{rng.randint(91, 140)}.0-rc1"},
        "reason": f"Try the release candidate of {service} before production.",
        "context": {"run_id": f"release-{service}", "plan_step": 1, "plan_total": 4},
        "confidence": round(rng.uniform(0.85, 0.99), 2),
    }


def _payment(large: bool) -> Make:
    def make(rng: random.Random) -> dict[str, Any]:
        payee = rng.choice(CUSTOMERS)
        amount = rng.randint(2_000, 25_000) if large else rng.randint(40, 900)
        invoice = f"INV-{rng.randint(10000, 99999)}"
        return {
            "action": "send_payment", "capabilities": ["payment"],
            "amount": amount, "currency": "EUR",
            "args": {"payee": payee, "amount": amount, "currency": "EUR", "invoice": invoice},
            "reason": f"Settle {invoice} from {payee}, due in {rng.randint(1, 9)} days.",
            "confidence": round(rng.uniform(0.75, 0.98), 2),
            "alternatives": ["pay on the due date instead", "ask finance to batch it"],
            "preview": {"kind": "json", "content": {
                "payee": payee, "amount": amount, "currency": "EUR", "invoice": invoice,
                "from_account": "ops-eur-01"}},
        }
    return make


def _email(external: bool) -> Make:
    def make(rng: random.Random) -> dict[str, Any]:
        to = (f"cto@{rng.choice(CUSTOMERS)}" if external else "support-team@example.com")
        ticket = f"T-{rng.randint(10000, 99999)}"
        subject = (f"Re: outage on your account ({ticket})" if external
                   else f"Escalation summary for {ticket}")
        body = ("Hello,\n\nThe incident that affected your checkout between 09:12 and 09:47 "
                "UTC is resolved. We will credit the affected orders this week.\n\n"
                "Regards,\nSupport") if external else (
                f"{ticket} was escalated twice; the customer asks for a call.")
        return {
            "action": "send_email", "recipients": [to],
            "args": {"to": to, "subject": subject, "ticket": ticket},
            "reason": f"Answer {ticket}: the customer asked for a status update.",
            "confidence": round(rng.uniform(0.72, 0.95), 2),
            "preview": {"kind": "email", "content": {
                "from": "support@example.com", "to": [to], "subject": subject, "body": body}},
        }
    return make


def _delete_rows(rng: random.Random) -> dict[str, Any]:
    days = rng.choice((30, 90, 180))
    rows = rng.randint(3, 80)
    return {
        "action": "db.delete_rows", "environment": "production", "affected_records": rows,
        "args": {"table": "sessions", "where": f"expires_at < now() - interval '{days} days'"},
        "reason": f"Purge {rows} sessions that expired over {days} days ago (retention policy).",
        "confidence": round(rng.uniform(0.8, 0.95), 2),
        "alternatives": ["let the nightly retention job do it"],
        "preview": {"kind": "sql", "content": (
            f"DELETE FROM sessions\n WHERE expires_at < now() - interval '{days} days';\n"
            f"-- {rows} rows")},
    }


def _forced_delete(rng: random.Random) -> dict[str, Any]:
    return {
        "action": "db.delete_rows", "environment": "production", "affected_records": 12,
        "args": {"table": "orders", "where": "status = 'test'", "force": True},
        "reason": "Remove test orders; the foreign keys are in the way, so force it.",
        "confidence": 0.66,
        "preview": {"kind": "sql", "content": "DELETE FROM orders WHERE status = 'test' CASCADE;"},
    }


def _bulk_update(rng: random.Random) -> dict[str, Any]:
    rows = rng.randint(150, 4_000)
    return {
        "action": "crm.update_contacts", "affected_records": rows,
        "args": {"set": {"region": "EMEA"}, "where": {"country": ["DE", "FR", "NL"]}},
        "reason": f"Move {rows} contacts to the new EMEA region after the territory change.",
        "confidence": round(rng.uniform(0.75, 0.95), 2),
        "context": {"run_id": "territory-2025", "plan_step": 2, "plan_total": 2},
        "preview": {"kind": "sql", "content": (
            "UPDATE contacts SET region = 'EMEA'\n WHERE country IN ('DE', 'FR', 'NL');\n"
            f"-- {rows} rows")},
    }


def _read(rng: random.Random) -> dict[str, Any]:
    name, args = rng.choice((
        ("read_customer", {"customer": rng.choice(CUSTOMERS)}),
        ("search_tickets", {"query": "refund", "status": "open"}),
        ("list_invoices", {"status": "overdue"}),
        ("get_deploy_status", {"service": rng.choice(SERVICES)}),
    ))
    return {"action": name, "args": args, "reason": "Gather context for the next step.",
            "confidence": round(rng.uniform(0.9, 1.0), 2)}


def _iam(rng: random.Random) -> dict[str, Any]:
    user = rng.choice(("dana", "lee", "sam", "kim"))
    return {
        "action": "iam.grant_role", "environment": "production",
        "args": {"user": user, "role": "db-admin", "duration": "4h"},
        "reason": f"{user} needs database access to finish the migration on-call asked for.",
        "confidence": 0.8, "alternatives": ["run the migration myself with a read-only role"],
    }


def _low_confidence(rng: random.Random) -> dict[str, Any]:
    return {
        "action": "ticket.close", "args": {"ticket": f"T-{rng.randint(10000, 99999)}"},
        "reason": "The customer has not replied in 7 days; the issue looks resolved.",
        "confidence": round(rng.uniform(0.35, 0.6), 2),
        "alternatives": ["send one more reminder first"],
    }


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """One kind of action a simulated agent proposes."""

    agent: str
    """Which agent token submits it (names the starter policy knows)."""
    make: Make
    """Builds the action, varied by the random source."""
    weight: int
    """How often it comes up after the opening round."""
    fail_rate: float = 0.1
    """Share of runs that report `failed`."""


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(agent="ops-agent", make=_deploy, weight=3, fail_rate=0.15),
    Scenario(agent="data-agent", make=_read, weight=5, fail_rate=0.02),
    Scenario(agent="billing-bot", make=_payment(large=True), weight=2),
    Scenario(agent="support-bot", make=_email(external=True), weight=2),
    Scenario(agent="data-agent", make=_delete_rows, weight=2),
    Scenario(agent="billing-bot", make=_payment(large=False), weight=2),
    Scenario(agent="data-agent", make=_bulk_update, weight=2),
    Scenario(agent="data-agent", make=_iam, weight=1),
    Scenario(agent="support-bot", make=_low_confidence, weight=2),
    Scenario(agent="support-bot", make=_email(external=False), weight=2),
    Scenario(agent="ops-agent", make=_deploy_staging, weight=1),
    Scenario(agent="data-agent", make=_forced_delete, weight=1),
)
AGENTS = tuple(dict.fromkeys(s.agent for s in SCENARIOS))

FAILURES = (
    "the upstream API answered 503 three times",
    "lock timeout after 30s; nothing was changed",
    "health check failed after the change; rolled back",
)


# --- the simulated agents -------------------------------------------------------------------


class Log:
    """One line per event, from every thread, coloured on a terminal."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._lock = threading.Lock()

    def line(self, agent: str, what: str, outcome: str, style: str = "") -> None:
        text = Text(time.strftime("%H:%M:%S "), style="dim")
        text.append(f"{agent:<12} ", style="cyan")
        text.append(f"{what:<34} ")
        text.append(visible(outcome), style=style)
        with self._lock:
            self.console.print(text, soft_wrap=True)


_STYLE = {"allow": "green", "notify": "green", "require_approval": "yellow",
          "suggest": "magenta", "deny": "red"}


class SimulatedAgents:
    """Submits a varied action every `interval` seconds; waits, claims and reports on each."""

    def __init__(self, server: str, tokens: dict[str, str], log: Log, *,
                 interval: float, seed: int | None = None) -> None:
        self.server = server
        self.tokens = tokens
        self.log = log
        self.interval = interval
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self._waiting: set[str] = set()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._spawn(self._run, "interlock-demo-agent")

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))

    def _spawn(self, target: Callable[..., None], name: str, *args: Any) -> None:
        def guarded() -> None:
            try:
                target(*args)
            except Exception as exc:  # a demo agent's own bug: one line, the rest go on
                self.log.line("agents", name, f"error: {type(exc).__name__}: {exc}", "red")

        thread = threading.Thread(target=guarded, name=name, daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _scenarios(self) -> Iterator[Scenario]:
        # The first round shows every kind once, in an order that puts a read and a gated
        # action on screen straight away; then a weighted mix.
        yield from SCENARIOS
        weights = [s.weight for s in SCENARIOS]
        while True:
            yield self.rng.choices(SCENARIOS, weights)[0]

    def _run(self) -> None:
        scenarios = self._scenarios()
        told_full = False
        while not self.stop.is_set():
            with self._lock:
                full = len(self._waiting) >= MAX_WAITING
            if full:
                if not told_full:
                    self.log.line("agents", "paused", f"{MAX_WAITING} requests wait for a "
                                  "reviewer; proposing more when some are decided", "dim")
                    told_full = True
            else:
                told_full = False
                scenario = next(scenarios)
                try:
                    self._submit(scenario, scenario.make(self.rng))
                except InterlockError as exc:
                    if not self.stop.is_set():
                        self.log.line(scenario.agent, "submit", f"error: {exc.message}",
                                      "red")
            self.stop.wait(self.interval)

    def _api(self, agent: str) -> Api:
        return Api(self.server, self.tokens[agent], timeout=WAIT_SLICE + 10)

    def _submit(self, scenario: Scenario, body: dict[str, Any]) -> None:
        body["idempotency_key"] = uuid.uuid4().hex
        what = body["action"] + (f" ({body['environment']})" if body.get("environment") else "")
        if body.get("revision_of"):
            what += " revised"
        with self._api(scenario.agent) as api:
            sub = api.post("/v1/actions", body)
        decision, rid = str(sub.get("decision")), str(sub.get("id"))
        reasons = "; ".join(sub.get("reasons") or [])
        self.log.line(scenario.agent, what, f"{decision:<16} {rid}  {reasons}",
                      _STYLE.get(decision, ""))
        if decision in ("allow", "notify"):
            self._spawn(self._execute, f"interlock-demo-{rid}", scenario, what, rid)
        elif decision == "require_approval":
            with self._lock:
                self._waiting.add(rid)
            self._spawn(self._wait_then_execute, f"interlock-demo-{rid}", scenario, what, rid)

    def _wait_then_execute(self, scenario: Scenario, what: str, rid: str) -> None:
        try:
            with self._api(scenario.agent) as api:
                while not self.stop.is_set():
                    got = api.get(f"/v1/actions/{rid}/wait", timeout=WAIT_SLICE)
                    if got.get("changed"):
                        break
                else:
                    return
            state = got.get("state")
            if state == "approved":
                self._execute(scenario, what, rid)
            elif state == "changes_requested":
                self._revise(scenario, what, rid, got)
            else:
                why = got.get("reason") or ""
                self.log.line(scenario.agent, what, f"{state:<16} {rid}  {why}".rstrip(),
                              "red" if state == "denied" else "dim")
        except (ServerRefused, Unreachable) as exc:
            if not self.stop.is_set():
                self.log.line(scenario.agent, what, f"error {rid}: {exc.message}", "red")
        finally:
            with self._lock:
                self._waiting.discard(rid)

    def _revise(self, scenario: Scenario, what: str, rid: str, got: dict[str, Any]) -> None:
        """Changes requested: propose the same action again, linked, with the note answered."""
        note = str(got.get("reason") or "")
        self.log.line(scenario.agent, what, f"{'changes_requested':<16} {rid}  {note}", "dim")
        body = dict(got.get("action") or {})
        for key in ("agent", "idempotency_key"):
            body.pop(key, None)
        body["revision_of"] = rid
        body["reason"] = f"{body.get('reason', '')} Revised after review: {note}".strip()
        self._submit(scenario, body)

    def _execute(self, scenario: Scenario, what: str, rid: str) -> None:
        try:
            with self._api(scenario.agent) as api:
                claim = api.post(f"/v1/actions/{rid}/claim", {})
                edited = " (with the reviewer's edits)" if claim.get("args") != (
                    api.get(f"/v1/actions/{rid}").get("action", {}).get("args")) else ""
                self.stop.wait(self.rng.uniform(0.2, 1.2))  # the work itself
                failed = self.rng.random() < scenario.fail_rate
                summary = self.rng.choice(FAILURES) if failed else "done"
                done = api.post(f"/v1/actions/{rid}/outcome", {
                    "status": "failed" if failed else "succeeded", "summary": summary})
            state = str(done.get("state"))
            note = f"ran{edited}: {summary}" if not failed else f"ran{edited} and failed: {summary}"
            self.log.line(scenario.agent, what, f"{state:<16} {rid}  {note}",
                          "red" if failed else "green")
        except (ServerRefused, Unreachable) as exc:
            if not self.stop.is_set():
                self.log.line(scenario.agent, what, f"error {rid}: {exc.message}", "red")


# --- the command ----------------------------------------------------------------------------


def approver_groups(policy: Policy) -> list[str]:
    """Every group the policy names as approvers (defaults, rules, stages, escalation)."""
    names: list[str] = list(policy.defaults.approvers)
    for rule in policy.rules:
        if rule.gate is None:
            continue
        for stage in rule.gate.stages:
            names.extend(stage.approvers)
        names.extend(rule.gate.escalate_to)
    return [n for n in dict.fromkeys(names) if not n.startswith("user:")]


def _tokens(store: Store, policy: Policy) -> tuple[dict[str, str], list[str], str | None]:
    groups = approver_groups(policy)
    reviewers = [store.create_token(kind="reviewer", name=name, groups=groups,
                                    actor="demo")[1] for name in ("alex", "sam")]
    agents = {name: store.create_token(kind="agent", name=name, actor="demo")[1]
              for name in AGENTS}
    return agents, reviewers, _first_admin(store)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    def interrupt(sig: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def demo(
    port: Annotated[int, typer.Option(
        "--port", min=0, max=65535, help="Port to listen on (0: any free port).")] = 8765,
    policy: Annotated[str | None, typer.Option(
        "--policy", help="Policy file (default: the starter policy).")] = None,
    interval: Annotated[float, typer.Option(
        "--interval", min=0.05, help="Seconds between the simulated agents' actions.")] = 4.0,
    seed: Annotated[int | None, typer.Option(
        "--seed", help="Seed for the simulated agents' choices.")] = None,
) -> None:
    """A server with simulated agents, to try interlock at once.

    Prints a reviewer sign-in link; the agents propose a varied mix of actions, wait on
    the gated ones and report outcomes, until Ctrl-C.
    """
    try:
        with _sigterm_as_interrupt():
            _demo(port, policy, interval, seed)
    except KeyboardInterrupt:
        pass
    typer.echo("demo stopped; its temporary database is gone")


def _demo(port: int, policy_file: str | None, interval: float, seed: int | None) -> None:
    from interlock.server.app import create_app

    console = Console(highlight=False)
    with tempfile.TemporaryDirectory(prefix="interlock-demo-") as tmp:
        path = Path(policy_file) if policy_file is not None else Path(tmp) / "interlock.yaml"
        if policy_file is None:
            starter_policy(path)
        loaded = load_policy(path)
        sock = listen("127.0.0.1", port)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        store = open_store(f"sqlite:///{Path(tmp) / 'demo.db'}")
        agents: SimulatedAgents | None = None
        try:
            store.record("system", "policy.loaded", {"hash": loaded.hash, "file": str(path)})
            agent_tokens, reviewers, admin = _tokens(store, loaded)
            app = create_app(Gateway(loaded, store, public_url=url),
                             ServerSettings(public_url=url))
            config = uvicorn.Config(app, log_level="warning", access_log=False,
                                    lifespan="on", timeout_graceful_shutdown=int(WAIT_SLICE) + 2)
            server = _Server(config)
            _banner(console, url, reviewers, admin, policy_file)
            agents = SimulatedAgents(url, agent_tokens, Log(console), interval=interval,
                                     seed=seed)
            server.agents = agents
            threading.Thread(target=_start_when_up, args=(server, agents),
                             name="interlock-demo-start", daemon=True).start()
            server.run(sockets=[sock])
        finally:
            if agents is not None:
                agents.stop.set()
                agents.join(timeout=WAIT_SLICE + 1)
            sock.close()
            store.close()


class _Server(uvicorn.Server):
    """uvicorn's server, stopping the simulated agents first so none sees it go away."""

    agents: SimulatedAgents | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.agents is not None:
            self.agents.stop.set()
        super().handle_exit(sig, frame)


def _start_when_up(server: _Server, agents: SimulatedAgents) -> None:
    deadline = time.monotonic() + 30
    while not server.started and not server.should_exit and time.monotonic() < deadline:
        time.sleep(0.05)
    if server.started and not server.should_exit:
        agents.start()


def _banner(console: Console, url: str, reviewers: list[str], admin: str | None,
            policy_file: str | None) -> None:
    console.rule(Text("interlock demo", style="bold"))
    console.print(f"serving the API and the reviewer UI at {url}/ "
                  f"with {'the starter policy' if policy_file is None else policy_file} "
                  "on a temporary database", soft_wrap=True)
    console.print(Text("\nSign in as a reviewer (every approver group) with this link:",
                       style="bold"))
    console.print(Text(f"\n    {url}/login?token={reviewers[0]}\n", style="bold green"),
                  soft_wrap=True)
    console.print("A second reviewer, for two-stage approvals such as large payments:",
                  soft_wrap=True)
    console.print(f"    {url}/login?token={reviewers[1]}", soft_wrap=True)
    if admin is not None:
        console.print("The admin, for the audit trail and insights:", soft_wrap=True)
        console.print(f"    {url}/login?token={admin}", soft_wrap=True)
    console.print(f"\nOr review from another terminal:\n    INTERLOCK_SERVER={url} "
                  f"INTERLOCK_TOKEN={reviewers[0]} interlock queue", soft_wrap=True)
    console.print("\nSimulated agents propose an action every few seconds; "
                  "Ctrl-C stops the demo.\n", soft_wrap=True)
    console.rule()
