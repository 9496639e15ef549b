"""Reviewer channels for embedded mode: who decides a request when there is no server.

A channel is asked once per version of a pending request; `None` means "not me, keep waiting".
"""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TextIO

Verdict = Literal["approve", "deny", "request_changes"]


@dataclass(frozen=True, kw_only=True)
class ReviewRequest:
    """What a reviewer sees of a pending request: the same facts the review page shows."""

    id: str
    """The request id."""
    action: str
    """The action name."""
    agent: str
    """The proposing agent."""
    summary: str
    """One line: the agent's description of the call, or the call itself."""
    risk: str
    """Risk class: low, medium or high."""
    why: tuple[str, ...]
    """Why it is gated: the policy's reasons (`rule production-approval`, ...)."""
    rules: tuple[str, ...]
    """The rules that decided it."""
    reason: str | None
    """Why the agent wants it, in its own words."""
    preview: dict[str, Any] | None
    """The computed effect, `{"kind", "content"}`, if the tool gave one."""
    args: dict[str, Any]
    """The real arguments it will run with (always shown beside the description)."""
    environment: str | None = None
    """Where it runs."""
    confirmation: str | None = None
    """The phrase to type to approve it, when the policy asks for typed confirmation."""
    guidance: tuple[str, ...] = ()
    """Reviewer guidance from the matching rules."""
    version: int = 0
    """The version this view was made from; a vote on an older one is refused."""
    problem: str | None = None
    """Why the previous answer was not accepted (e.g. an edit the policy refused)."""


@dataclass(frozen=True, kw_only=True)
class ReviewDecision:
    """A reviewer's answer."""

    verdict: Verdict
    """approve, deny or request_changes."""
    note: str | None = None
    """Required for deny and request_changes: words the agent can act on."""
    args: dict[str, Any] | None = None
    """Edited arguments (approve only); the policy checks them again."""
    confirmation: str | None = None
    """The typed confirmation phrase, where required."""
    reviewer: str | None = None
    """Who decides; defaults to the channel's reviewer."""


class Channel(Protocol):
    """Asked to review a pending request; answers a decision or None (someone else decides)."""

    reviewer: str

    def review(self, request: ReviewRequest) -> ReviewDecision | None: ...


@dataclass(kw_only=True)
class CallbackChannel:
    """A Python function decides: `Callable[[ReviewRequest], ReviewDecision | None]`."""

    fn: Callable[[ReviewRequest], ReviewDecision | None]
    """Called once per version of each pending request."""
    reviewer: str = "callback"
    """The reviewer name recorded in the audit trail."""

    def review(self, request: ReviewRequest) -> ReviewDecision | None:
        return self.fn(request)


@dataclass(kw_only=True)
class WebChannel:
    """Nobody in this process decides: wait for the reviewer web UI, the CLI or the API."""

    reviewer: str = "web"

    def review(self, request: ReviewRequest) -> ReviewDecision | None:
        return None


@dataclass(kw_only=True)
class TerminalChannel:
    """Ask at a terminal: shows the request, asks approve / deny / changes / edit."""

    input: TextIO = field(default_factory=lambda: sys.stdin)
    """Where answers are read from."""
    output: TextIO = field(default_factory=lambda: sys.stderr)
    """Where the request is shown (stderr, so stdout stays the program's)."""
    reviewer: str = field(default_factory=lambda: _user())
    """The reviewer name recorded in the audit trail."""

    def review(self, request: ReviewRequest) -> ReviewDecision | None:
        self._show(render(request))
        try:
            while True:
                choice = self._ask("[a]pprove  [d]eny  [c]hanges  [e]dit args  [s]kip > ")
                choice = choice.strip().lower()[:1]
                if choice == "a":
                    return self._approve(request, None)
                if choice == "d":
                    note = self._ask_required("Reason for the agent: ")
                    return ReviewDecision(verdict="deny", note=note)
                if choice == "c":
                    note = self._ask_required("What should change: ")
                    return ReviewDecision(verdict="request_changes", note=note)
                if choice == "e":
                    edited = self._edit(request.args)
                    if edited is not None:
                        return self._approve(request, edited)
                if choice == "s":
                    return None
        except EOFError:
            self._show("no answer at the terminal: waiting for the web UI")
            return None

    def _approve(self, request: ReviewRequest, args: dict[str, Any] | None) -> ReviewDecision:
        confirmation = None
        if request.confirmation:
            while confirmation != request.confirmation:
                confirmation = self._ask(f"Type `{request.confirmation}` to confirm: ").strip()
        note = self._ask("Note (optional): ").strip() or None
        return ReviewDecision(verdict="approve", args=args, confirmation=confirmation, note=note)

    def _edit(self, args: dict[str, Any]) -> dict[str, Any] | None:
        self._show("Current args: " + json.dumps(args, sort_keys=True))
        self._show("Enter changes as key=JSON value, one per line; an empty line ends.")
        edited = dict(args)
        while line := self._ask("  ").strip():
            key, sep, raw = line.partition("=")
            if not sep or not key.strip():
                self._show("  expected key=value")
                continue
            try:
                edited[key.strip()] = json.loads(raw)
            except json.JSONDecodeError:
                edited[key.strip()] = raw.strip()
        if edited == args:
            self._show("no change")
            return None
        self._show("Edited args: " + json.dumps(edited, sort_keys=True))
        return edited

    def _ask_required(self, prompt: str) -> str:
        while not (answer := self._ask(prompt).strip()):
            pass
        return answer

    def _ask(self, prompt: str) -> str:
        self.output.write(prompt)
        self.output.flush()
        line = self.input.readline()
        if not line:
            raise EOFError
        return line.rstrip("\n")

    def _show(self, text: str) -> None:
        self.output.write(text + "\n")
        self.output.flush()


def render(request: ReviewRequest) -> str:
    """The request as text: summary, risk and why gated, reasons, preview, real args."""
    lines = [
        "",
        f"== interlock: approval needed for `{request.action}` (request {request.id}) ==",
        f"summary:  {request.summary}",
        f"agent:    {request.agent}"
        + (f"   environment: {request.environment}" if request.environment else ""),
        f"risk:     {request.risk}",
        "why gated: " + ("; ".join(request.why) or "(policy baseline)"),
    ]
    if request.reason:
        lines.append(f"agent's reason: {request.reason}")
    lines.extend(f"guidance: {g}" for g in request.guidance)
    if request.preview:
        kind = request.preview.get("kind", "text")
        content = request.preview.get("content")
        text = content if isinstance(content, str) else json.dumps(content, indent=2)
        lines.append(f"preview ({kind}):")
        lines.extend(f"  | {line}" for line in str(text).splitlines() or [""])
    lines.append("args (what will really run):")
    lines.extend(
        f"  {line}" for line in json.dumps(request.args, indent=2, sort_keys=True).splitlines()
    )
    if request.confirmation:
        lines.append(f"typed confirmation required: `{request.confirmation}`")
    if request.problem:
        lines.append(f"previous answer not accepted: {request.problem}")
    return "\n".join(lines)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "local-reviewer"


ChannelSpec = Literal["terminal", "web"] | Channel | Callable[[ReviewRequest], Any]


def make_channel(spec: ChannelSpec | None) -> Channel:
    """A channel from what `Gate.from_policy(channel=...)` accepts."""
    if spec is None:
        return TerminalChannel() if sys.stdin is not None and sys.stdin.isatty() else WebChannel()
    if spec == "terminal":
        return TerminalChannel()
    if spec == "web":
        return WebChannel()
    if isinstance(spec, str):
        raise ValueError(f"unknown channel `{spec}`: use terminal, web, or a callable")
    if hasattr(spec, "review") and hasattr(spec, "reviewer"):
        return spec
    if callable(spec):
        return CallbackChannel(fn=spec)
    raise TypeError("channel must be `terminal`, `web`, a Channel, or a callable")
