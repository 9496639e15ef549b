"""Closing the loop: figures over the decision history, gate-tuning advice, eval-data export.

`figures` reads the history and computes rates and times; `advice` turns them into suggested
policy changes; `export` writes every decision as labelled JSONL.
"""

from __future__ import annotations

from interlock.insights.advice import Advice, advise
from interlock.insights.export import export_lines, json_patch
from interlock.insights.figures import Figures, Insights, parse_window, report

__all__ = [
    "Advice",
    "Figures",
    "Insights",
    "advise",
    "export_lines",
    "json_patch",
    "parse_window",
    "report",
]
