"""What the reviewer pages show, worked out from requests: summaries, previews, stage progress.

Pure functions from store records to small view records; the templates only lay them out,
and everything an agent wrote stays a plain string for Jinja2 to escape.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from interlock.gateway import Principal
from interlock.policy.explain import describe_gate, format_duration
from interlock.server.auth import asked_for
from interlock.store import Request, State, Store, quorum

#: Characters that can make text read differently from what it is (bidi overrides, etc.).
_INVISIBLE = {
    *range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200B, 0x200C, 0x200D, 0x200E, 0x200F,
    0xFEFF, 0x00AD,
}


def visible(text: Any) -> str:
    """Text with control and direction-changing characters shown as `<U+XXXX>` markers."""
    out = []
    for ch in str(text):
        code = ord(ch)
        if code in _INVISIBLE or (code < 32 and ch not in "\n\t") or 0x7F <= code < 0xA0:
            out.append(f"<U+{code:04X}>")
        else:
            out.append(ch)
    return "".join(out)


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


def ago(seconds: float) -> str:
    """`3m`, `2h5m`: how long, in the largest units, rounded to the minute after an hour."""
    if seconds >= 3600:
        seconds = seconds - seconds % 60
    return format_duration(max(0.0, seconds))


def iso(at: float | None) -> str:
    """UTC time as ISO-8601, for `<time datetime>` and tooltips."""
    if at is None:
        return ""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def short_time(at: float | None) -> str:
    if at is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(at))


def _money(amount: Any, currency: Any) -> str | None:
    if isinstance(amount, bool) or not isinstance(amount, int | float):
        return None
    text = f"{amount:,.2f}" if isinstance(amount, float) and not amount.is_integer() else (
        f"{int(amount):,}")
    return f"{text} {currency}" if isinstance(currency, str) and currency else text


def summary(request: Request) -> str:
    """One sentence: who wants to do what, where, how big. Plain text (escaped later)."""
    a = request.action
    parts = [f"{request.agent} wants to run {request.action_name}"]
    env = a.get("environment")
    if isinstance(env, str) and env:
        parts.append(f"in {env}")
    money = _money(a.get("amount"), a.get("currency"))
    extras = []
    if money:
        extras.append(f"amount {money}")
    records = a.get("affected_records")
    if isinstance(records, int) and not isinstance(records, bool):
        extras.append(f"{records:,} record{'s' if records != 1 else ''} affected")
    recipients = a.get("recipients")
    if isinstance(recipients, list) and recipients:
        shown = ", ".join(str(r) for r in recipients[:3])
        more = f" and {len(recipients) - 3} more" if len(recipients) > 3 else ""
        extras.append(f"to {shown}{more}")
    args = a.get("args")
    if isinstance(args, dict):
        shown_args = [f"{k}={_short(v)}" for k, v in args.items()
                      if isinstance(v, str | int | float | bool) and k not in a][:3]
        if shown_args:
            parts.append("with " + ", ".join(shown_args))
    sentence = " ".join(parts)
    if extras:
        sentence += " (" + "; ".join(extras) + ")"
    return visible(sentence + ".")


def _short(value: Any, limit: int = 40) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(kw_only=True)
class Preview:
    """The agent's computed effect, shaped for its kind."""

    kind: str
    """diff / sql / email / text / json / other."""
    text: str = ""
    """sql, text, json (pretty), other (pretty JSON of the whole preview)."""
    lines: list[tuple[str, str]] = field(default_factory=list)
    """diff: (css class, line)."""
    headers: list[tuple[str, str]] = field(default_factory=list)
    """email: (name, value)."""
    html_source: str | None = None
    """email: an HTML body, shown only as its source."""


_EMAIL_HEADERS = ("from", "to", "cc", "bcc", "reply_to", "subject")


def preview(action: dict[str, Any]) -> Preview | None:
    raw = action.get("preview")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        return Preview(kind="text", text=visible(raw if isinstance(raw, str) else pretty_json(raw)))
    kind = raw.get("kind")
    content = raw.get("content")
    if kind == "diff" and isinstance(content, str):
        lines = []
        for line in content.splitlines():
            if line.startswith(("+++", "---")):
                cls = "file"
            elif line.startswith("+"):
                cls = "add"
            elif line.startswith("-"):
                cls = "del"
            elif line.startswith("@@"):
                cls = "hunk"
            else:
                cls = "ctx"
            lines.append((cls, visible(line)))
        return Preview(kind="diff", lines=lines)
    if kind in ("sql", "text") and isinstance(content, str):
        return Preview(kind=kind, text=visible(content))
    if kind == "json":
        return Preview(kind="json", text=visible(pretty_json(content)))
    if kind == "email":
        return _email(content)
    return Preview(kind="other", text=visible(pretty_json(raw)))


def _email(content: Any) -> Preview:
    if isinstance(content, str):
        # A raw message: headers until the first blank line, then the body, all as text.
        head, _, body = content.partition("\n\n")
        headers: list[tuple[str, str]] = []
        for line in head.splitlines():
            name, sep, value = line.partition(":")
            if sep and name.strip() and " " not in name.strip():
                headers.append((name.strip(), visible(value.strip())))
            else:
                headers, body = [], content
                break
        return Preview(kind="email", headers=headers, text=visible(body))
    if not isinstance(content, dict):
        return Preview(kind="email", text=visible(pretty_json(content)))
    fields: list[tuple[str, str]] = []
    for key in _EMAIL_HEADERS:
        given = content.get(key)
        if given is None:
            continue
        shown = ", ".join(str(v) for v in given) if isinstance(given, list) else str(given)
        fields.append((key.replace("_", "-").capitalize(), visible(shown)))
    text = content.get("body", content.get("text", ""))
    html = content.get("html")
    return Preview(
        kind="email", headers=fields,
        text=visible(text if isinstance(text, str) else pretty_json(text)),
        html_source=visible(html) if isinstance(html, str) else None,
    )


@dataclass(frozen=True, kw_only=True)
class Decidable:
    """Whether someone may vote on a request now: true when they may, else says why not."""

    why: Literal["", "closed", "agent", "proposed", "asked", "not_an_approver"]
    """Empty when they may; `proposed`: it is their own request; `asked`: they are the admin
    who asked for this change to interlock, which a second admin decides."""

    def __bool__(self) -> bool:
        return not self.why


def may_decide(request: Request, who: Principal) -> Decidable:
    """Whether `who` may vote on this request now (an approver of an open stage), and the
    reason the page gives when not."""
    if request.state is not State.PENDING or request.requirements is None:
        return Decidable(why="closed")
    if who.role == "agent":
        return Decidable(why="agent")
    if who.name == request.agent:
        return Decidable(why="proposed")
    if asked_for(request, who):
        return Decidable(why="asked")
    try:
        allowed = quorum.allowed_stages(request.requirements, request.progress, who.reviewer)
    except (KeyError, IndexError, TypeError):
        allowed = []
    return Decidable(why="" if allowed else "not_an_approver")


@dataclass(kw_only=True)
class StageView:
    """One stage of one gate, as the progress document has it."""

    gate: str
    name: str
    approvers: list[str]
    quorum: int
    approvals: list[str]
    status: str
    """open / done / waiting."""
    deadline: float | None


@dataclass(kw_only=True)
class GateView:
    source: str
    lines: list[str]
    guidance: str | None
    stages: list[StageView]


def gates(request: Request) -> list[GateView]:
    """Why it was gated and how far approval has come, per gate."""
    reqs = request.requirements
    if reqs is None:
        return []
    progress = request.progress.get("gates", []) if isinstance(request.progress, dict) else []
    result = []
    for gi, gate in enumerate(reqs.gates):
        stages = []
        for si, stage in enumerate(gate.stages):
            try:
                st = progress[gi]["stages"][si]
            except (IndexError, KeyError, TypeError):
                st = {}
            if st.get("done_at") is not None:
                status = "done"
            elif st.get("opened_at") is not None:
                status = "open"
            else:
                status = "waiting"
            stages.append(StageView(
                gate=gate.source, name=stage.name,
                approvers=[*stage.approvers, *st.get("extra", [])],
                quorum=stage.quorum, approvals=list(st.get("approvals", [])),
                status=status, deadline=st.get("deadline") if status == "open" else None,
            ))
        lines = [ln for ln in describe_gate(gate) if not ln.startswith("guidance: ")]
        result.append(GateView(source=gate.source, lines=lines, guidance=gate.guidance,
                               stages=stages))
    return result


def _id_floor(at: float) -> str:
    """The smallest request id (a ULID) minted at `at`: ids sort by time."""
    value = int(at * 1000) << 80
    return "".join(_B32[(value >> (5 * i)) & 31] for i in reversed(range(26)))


_B32 = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
#: How far back the history of an agent and action looks.
HISTORY_WINDOW = 90 * 86400.0


def history(store: Store, request: Request, count: int = 5, page: int = 500) -> list[Request]:
    """The agent's last few earlier requests of the same action, newest first.

    The store lists oldest first, so walk the agent's requests of the recent window up to
    this one, keeping the last few that match."""
    kept: list[Request] = []
    after = _id_floor(request.created_at - HISTORY_WINDOW)
    for _ in range(40):
        rows = store.list_requests(agent=request.agent, limit=page, after=after)
        for r in rows:
            if r.id >= request.id:
                return list(reversed(kept))
            if r.action_name == request.action_name:
                kept = [*kept[-(count - 1):], r] if count > 1 else [r]
        if len(rows) < page:
            break
        after = rows[-1].id
    return list(reversed(kept))


def plan_step(action: dict[str, Any]) -> str | None:
    ctx = action.get("context")
    if not isinstance(ctx, dict):
        return None
    step, total = ctx.get("plan_step"), ctx.get("plan_total")
    if step is None:
        return None
    return visible(f"step {step} of {total}" if total is not None else f"step {step}")


def confidence(action: dict[str, Any]) -> str | None:
    value = action.get("confidence")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return f"{value:.0%}" if 0 <= value <= 1 else visible(value)


def alternatives(action: dict[str, Any]) -> list[str]:
    alts = action.get("alternatives")
    if isinstance(alts, list):
        return [visible(a if isinstance(a, str) else pretty_json(a)) for a in alts]
    return [visible(alts)] if isinstance(alts, str) and alts else []


def edited_keys(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Top-level argument names an edit added, removed or changed."""
    keys = dict.fromkeys([*before, *after])
    return [k for k in keys if before.get(k, ...) != after.get(k, ...)]
