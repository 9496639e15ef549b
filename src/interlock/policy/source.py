"""YAML text -> plain data plus the source position of every key and value.

The loader reports problems as `file:line:col: message`; this module is where the
positions come from, and where YAML syntax errors become diagnostics.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from interlock.errors import Diagnostic

Path = tuple[str | int, ...]


@dataclass
class Source:
    """A parsed YAML document and the diagnostics collected while reading it."""

    file: str
    """The file name used in diagnostics."""
    text: str
    """The raw text (hashed for the policy hash)."""
    data: Any = None
    """The document as ruamel round-trip objects (dict/list subclasses)."""
    diagnostics: list[Diagnostic] = field(default_factory=list)
    """Errors and warnings, in the order found."""

    def error(self, where: Path, message: str, *, key: bool = False) -> None:
        """Record an error at the value (or, with `key`, the key) found at `where`."""
        line, col = self.position(where, key=key)
        self.diagnostics.append(Diagnostic(file=self.file, line=line, col=col, message=message))

    def warning(self, where: Path, message: str) -> None:
        line, col = self.position(where, key=True)
        self.diagnostics.append(
            Diagnostic(file=self.file, line=line, col=col, message=message, severity="warning")
        )

    def position(self, where: Path, *, key: bool = False) -> tuple[int, int]:
        """1-based (line, col) of the value at `where`, or of its key; nearest known parent."""
        node = self.data
        best = (1, 1)
        for i, step in enumerate(where):
            last = i == len(where) - 1
            if isinstance(node, CommentedMap) and step in node:
                try:
                    pos = node.lc.key(step) if (last and key) else node.lc.value(step)
                except (KeyError, TypeError):
                    pos = None
                if pos is not None:
                    best = (pos[0] + 1, pos[1] + 1)
                node = node[step]
            elif isinstance(node, CommentedSeq) and isinstance(step, int) and step < len(node):
                try:
                    pos = node.lc.item(step)
                except (KeyError, TypeError, IndexError):
                    pos = None
                if pos is not None:
                    best = (pos[0] + 1, pos[1] + 1)
                node = node[step]
            else:
                break
        return best

    @property
    def ok(self) -> bool:
        return not any(d.severity == "error" for d in self.diagnostics)


def parse_yaml(text: str, file: str) -> Source:
    """Parse `text`; a syntax error becomes one diagnostic and `data` stays None."""
    src = Source(file=file, text=text)
    yaml = YAML(typ="rt", pure=True)
    yaml.allow_duplicate_keys = False
    try:
        src.data = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        src.diagnostics.append(
            Diagnostic(file=file, line=line, col=col, message=f"YAML syntax: {problem}")
        )
    except YAMLError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid YAML"
        src.diagnostics.append(Diagnostic(file=file, line=1, col=1, message=f"YAML: {first}"))
    except (ValueError, TypeError, RecursionError) as exc:
        # ruamel raises plain errors on a few malformed scalars (e.g. bad timestamps).
        src.diagnostics.append(
            Diagnostic(file=file, line=1, col=1, message=f"YAML: {type(exc).__name__}: {exc}")
        )
    return src


def items(node: Any) -> Iterator[tuple[Any, Any]]:
    """Key/value pairs of a mapping node (empty for anything else)."""
    if isinstance(node, dict):
        yield from node.items()


def plain(node: Any) -> Any:
    """Convert ruamel round-trip objects into plain dicts, lists and scalars."""
    if isinstance(node, dict):
        return {str(k) if not isinstance(k, str) else k: plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    return node
