"""The insights page of the reviewer UI: figures, charts drawn as server-side SVG, and advice
that an admin applies to the policy file with a plain form (a loosening waits for a second admin).

Charts are plain SVG shapes styled by classes from `static/insights.css` (the CSP allows no
inline script or style); every number is also in a table beside them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from interlock.errors import BadInput, InterlockError
from interlock.insights.advice import payload
from interlock.insights.apply import apply_advice
from interlock.insights.figures import GROUPINGS, GroupBy, parse_window, report

if TYPE_CHECKING:
    from interlock.gateway import Principal
    from interlock.server.ui import UI
    from interlock.server.ui_session import Session

WINDOWS = ("1h", "24h", "7d", "30d", "90d")
#: Chart canvas, in SVG user units.
WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD_TOP = 640, 180, 36, 22, 8


@dataclass(frozen=True, kw_only=True)
class Bar:
    """One rectangle of a chart, with its tooltip."""

    x: float
    y: float
    w: float
    h: float
    cls: str
    title: str


@dataclass(frozen=True, kw_only=True)
class Chart:
    """A chart's shapes and axis labels, in SVG units."""

    bars: list[Bar]
    line: str
    """SVG polyline points (queue depth), empty for bar charts."""
    y_max: int
    labels: list[tuple[float, str]]
    """x position and text of the x-axis labels."""
    width: int = WIDTH
    height: int = HEIGHT
    plot_bottom: int = HEIGHT - PAD_BOTTOM
    plot_left: int = PAD_LEFT


def _scale(value: float, top: int) -> float:
    span = HEIGHT - PAD_BOTTOM - PAD_TOP
    return span * value / top if top else 0.0


def _label_time(ts: float, size: float) -> str:
    fmt = "%H:%M" if size < 86400 else "%m-%d"
    return time.strftime(fmt, time.gmtime(ts))


def _every(n: int, most: int = 8) -> int:
    return max(1, -(-n // most))


def approvals_chart(series: list[dict[str, Any]], size: float) -> Chart:
    """Stacked bars per slice: approved, denied, sent back or timed out."""
    n = max(1, len(series))
    top = max([b["approved"] + b["denied"] + b["other"] for b in series] + [1])
    slot = (WIDTH - PAD_LEFT) / n
    bars: list[Bar] = []
    labels: list[tuple[float, str]] = []
    for i, b in enumerate(series):
        x = PAD_LEFT + i * slot + slot * 0.1
        base = float(HEIGHT - PAD_BOTTOM)
        when = _label_time(b["start"], size)
        for key, cls in (("approved", "c-approved"), ("denied", "c-denied"),
                         ("other", "c-other")):
            h = _scale(b[key], top)
            if h > 0:
                base -= h
                bars.append(Bar(x=x, y=base, w=slot * 0.8, h=h, cls=cls,
                                title=f"{when}: {b[key]} {key}"))
        if i % _every(n) == 0:
            labels.append((x + slot * 0.4, when))
    return Chart(bars=bars, line="", y_max=top, labels=labels)


def histogram_chart(histogram: list[dict[str, Any]]) -> Chart:
    """Bars per time-to-decision bin."""
    n = max(1, len(histogram))
    top = max([h["count"] for h in histogram] + [1])
    slot = (WIDTH - PAD_LEFT) / n
    bars, labels = [], []
    for i, h in enumerate(histogram):
        x = PAD_LEFT + i * slot + slot * 0.15
        height = _scale(h["count"], top)
        cls = "c-fast" if h["bin"] == "<3s" else "c-bin"
        bars.append(Bar(x=x, y=HEIGHT - PAD_BOTTOM - height, w=slot * 0.7, h=height, cls=cls,
                        title=f"{h['bin']}: {h['count']} decisions"))
        labels.append((x + slot * 0.35, h["bin"]))
    return Chart(bars=bars, line="", y_max=top, labels=labels)


def queue_chart(series: list[dict[str, Any]], size: float) -> Chart:
    """The peak number of requests waiting for people, per slice, as a step line."""
    n = max(1, len(series))
    top = max([b["queue_depth"] for b in series] + [1])
    slot = (WIDTH - PAD_LEFT) / n
    points: list[str] = []
    bars: list[Bar] = []
    labels: list[tuple[float, str]] = []
    for i, b in enumerate(series):
        y = HEIGHT - PAD_BOTTOM - _scale(b["queue_depth"], top)
        x0, x1 = PAD_LEFT + i * slot, PAD_LEFT + (i + 1) * slot
        points += [f"{x0:.1f},{y:.1f}", f"{x1:.1f},{y:.1f}"]
        when = _label_time(b["start"], size)
        # Invisible hit areas carry the tooltips.
        bars.append(Bar(x=x0, y=PAD_TOP, w=slot, h=HEIGHT - PAD_BOTTOM - PAD_TOP,
                        cls="c-hit", title=f"{when}: up to {b['queue_depth']} waiting"))
        if i % _every(n) == 0:
            labels.append((x0 + slot / 2, when))
    return Chart(bars=bars, line=" ".join(points), y_max=top, labels=labels)


def diff_lines(diff: str) -> list[tuple[str, str]]:
    """(class, text) per line of a unified diff."""
    out = []
    for text in diff.splitlines():
        cls = ("d-file" if text.startswith(("---", "+++")) else "d-hunk" if text.startswith("@@")
               else "d-add" if text.startswith("+") else "d-del" if text.startswith("-")
               else "d-ctx")
        out.append((cls, text))
    return out


def routes(ui: UI) -> list[BaseRoute]:
    """The insights page, sharing the UI's sessions and templates."""

    gw = ui.gw

    async def view(session: Session, who: Principal, window: str, by: str, *,
                   status: int = 200, error: str | None = None,
                   done: dict[str, str] | None = None) -> Response:
        try:
            seconds = parse_window(window)
            if by not in GROUPINGS:
                raise BadInput(f"`by` is one of {', '.join(GROUPINGS)}, not `{by}`")
        except BadInput as exc:
            return ui.error(session, who, 400, "These insights cannot be shown", exc.message)
        group: GroupBy = by

        def compute() -> dict[str, Any]:
            return payload(report(gw.store, window=seconds, by=group), gw.policy.file)

        data = await run_in_threadpool(compute)
        size = (data["series"][1]["start"] - data["series"][0]["start"]
                if len(data["series"]) > 1 else data["window_seconds"])
        return ui.render(
            "insights.html", session, who, status=status, data=data, window=window, by=by,
            windows=WINDOWS, groupings=GROUPINGS,
            approvals=approvals_chart(data["series"], size),
            histogram=histogram_chart(data["histogram"]),
            queue=queue_chart(data["series"], size),
            diffs={i: diff_lines(a["diff"]) for i, a in enumerate(data["advice"])
                   if a["diff"]},
            error=error, done=done or {}, policy_hash=gw.policy.hash,
        )

    async def page(request: Request) -> Response:
        auth = ui.signed_in(request)
        if isinstance(auth, Response):
            return auth
        session, who = auth
        q = request.query_params
        done = {k: q[k] for k in ("applied", "pending", "hash") if q.get(k)}
        return await view(session, who, q.get("window", "7d"), q.get("by", "rule"), done=done)

    async def apply(request: Request) -> Response:
        """An admin applies one advice item: at once, or as a request for a second admin."""
        got = await ui.posted(request)
        if isinstance(got, Response):
            return got
        session, who, form = got
        window, by = form.get("window") or "7d", form.get("by") or "rule"
        if who.role != "admin":
            return ui.error(session, who, 403, "Only admins change the policy",
                            "Ask an admin to apply this advice.")
        advice_id = form.get("advice_id", "").strip()
        try:
            done = await run_in_threadpool(
                lambda: apply_advice(gw.store, policy_file=gw.policy.file,
                                     advice_id=advice_id, admin=who.name,
                                     window=parse_window(window),
                                     reason=form.get("reason", "").strip() or None,
                                     swap=gw.swap_policy, served_hash=gw.policy.hash))
        except InterlockError as exc:
            return await view(session, who, window, by, status=exc.status,
                              error=f"`{advice_id}` was not applied: {exc.message}")
        shown = ({"applied": done.advice_id, "hash": done.new_hash or ""}
                 if done.status == "applied"
                 else {"pending": done.request_id or "", "applied": done.advice_id})
        return ui.redirect("/insights?" + urlencode({"window": window, "by": by, **shown}))

    return [Route("/insights", page, methods=["GET"], name="ui-insights"),
            Route("/insights/apply", apply, methods=["POST"])]
