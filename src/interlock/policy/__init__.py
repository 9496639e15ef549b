"""Policy as code: load (YAML with positions) -> compile (indexes, CEL) -> evaluate -> explain.

Pure: nothing here does I/O beyond reading the policy file it is asked to load.
"""

from __future__ import annotations

from pathlib import Path

from interlock.errors import Diagnostic, PolicyError
from interlock.policy.engine import Policy
from interlock.policy.load import load_text, parse_duration
from interlock.policy.records import (
    Decision,
    Facts,
    Gate,
    Level,
    OnTimeout,
    PolicyResult,
    Requirements,
    Risk,
    Stage,
)

__all__ = [
    "Decision",
    "Facts",
    "Gate",
    "Level",
    "OnTimeout",
    "Policy",
    "PolicyResult",
    "Requirements",
    "Risk",
    "Stage",
    "check_policy",
    "load_policy",
    "load_policy_text",
    "parse_duration",
    "read_policy_file",
]


def read_policy_file(path: str | Path) -> str:
    """The file's text; a missing or unreadable file is a PolicyError with its name."""
    name = str(path)
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError([_diag(name, "no such file")]) from None
    except IsADirectoryError:
        raise PolicyError([_diag(name, "is a directory, not a policy file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError([_diag(name, f"cannot read: {exc}")]) from None


def load_policy_text(text: str, file: str = "<policy>") -> Policy:
    """Compile policy text; raises PolicyError listing every error."""
    doc, diagnostics = load_text(text, file)
    if doc is None:
        raise PolicyError(diagnostics)
    policy = Policy(doc)
    policy.warnings = [d for d in diagnostics if d.severity != "error"]
    return policy


def load_policy(path: str | Path) -> Policy:
    """Load and compile a policy file; raises PolicyError listing every error."""
    return load_policy_text(read_policy_file(path), str(path))


def check_policy(path: str | Path) -> list[Diagnostic]:
    """Every error and warning of a policy file, in file order."""
    try:
        text = read_policy_file(path)
    except PolicyError as exc:
        return exc.diagnostics
    _, diagnostics = load_text(text, str(path))
    return sorted(diagnostics, key=lambda d: (d.line, d.col))


def _diag(file: str, message: str) -> Diagnostic:
    return Diagnostic(file=file, line=1, col=1, message=message)
