"""`python -m bench`: run every benchmark and write `bench/REPORT.md`.

Each section is one benchmark's own table, with its anchor measured in the same run.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from bench import policy, sdk, server, store

REPORT = Path(__file__).with_name("REPORT.md")
PG = os.environ.get("INTERLOCK_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")

SECTIONS: list[tuple[str, str, Callable[[], str]]] = [
    ("Policy decisions", "interlock vs cedarpy vs a dict floor (issue: policy engine)",
     policy.run),
    ("Store cycles", "full request cycles vs plain insert transactions, and audit verify",
     lambda: store.run(seconds=5.0, verify_entries=300_000, pg=PG)),
    ("SDK guard", "`@gate.guard` overhead vs a plain durable insert", sdk.run),
    ("Server", "submit throughput and waiter wake-up vs a bare Starlette endpoint", server.run),
]


def _versions() -> str:
    names = ["starlette", "uvicorn", "SQLAlchemy", "psycopg", "common-expression-language",
             "cedarpy", "pydantic"]
    found = []
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)


def main() -> None:
    only = set(sys.argv[1:])
    parts = [
        "# interlock benchmark report",
        "",
        f"Machine: {os.cpu_count()} CPUs ({platform.machine()}), "
        f"Python {platform.python_version()}; {_versions()}.",
        f"Run on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Every figure stands "
        "beside its anchor measured in the same run; compare ratios, not absolute numbers.",
    ]
    for title, what, fn in SECTIONS:
        if only and title.split()[0].lower() not in only:
            continue
        print(f"== {title}", flush=True)
        table = fn()
        print(table, flush=True)
        parts += ["", f"## {title}", "", what, "", table]
    REPORT.write_text("\n".join(parts) + "\n")
    print(f"wrote {REPORT}")


if __name__ == "__main__":
    main()
