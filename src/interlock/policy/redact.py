"""Masking of the policy's `redact` paths, applied to an action before anything is stored.

A path is dot-separated segments over the action (`args.password`); a segment may be a
glob (`args.*.token`). List elements are walked through transparently.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Any

MASK = "[redacted]"


def compile_paths(patterns: Sequence[str]) -> tuple[tuple[str, ...], ...]:
    """Split each pattern into its segments once."""
    return tuple(tuple(p.split(".")) for p in patterns)


def redact(action: Mapping[str, Any], patterns: Sequence[tuple[str, ...]]) -> dict[str, Any]:
    """A copy of `action` with every value at a matching path replaced by `[redacted]`."""
    result: dict[str, Any] = dict(action)
    for segments in patterns:
        _mask(result, segments)
    return result


def _mask(node: Any, segments: tuple[str, ...]) -> None:
    if not segments:
        return
    if isinstance(node, list):
        for i, item in enumerate(node):
            if isinstance(item, (dict, list)):
                node[i] = _copy(item)
                _mask(node[i], segments)
        return
    if not isinstance(node, dict):
        return
    head, rest = segments[0], segments[1:]
    keys = [k for k in node if isinstance(k, str) and fnmatchcase(k, head)]
    for key in keys:
        if not rest:
            node[key] = MASK
        elif isinstance(node[key], (dict, list)):
            node[key] = _copy(node[key])
            _mask(node[key], rest)


def _copy(value: Any) -> Any:
    # Shallow copies along the walked path only: the caller's action is never mutated.
    return dict(value) if isinstance(value, dict) else list(value)
