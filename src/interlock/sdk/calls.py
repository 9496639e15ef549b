"""From a Python call to an action's `args` and back: how `@gate.guard` sees a function.

Arguments that are not JSON (a connection, a client) are shown as text and passed through.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any

from interlock.policy.redact import MASK

_P = inspect.Parameter
_SCALARS = (str, int, float, bool, type(None))
_SELF = ("self", "cls")


def jsonable(value: Any) -> bool:
    """Whether a value survives JSON unchanged in meaning."""
    if isinstance(value, _SCALARS):
        return True
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


class CallShape:
    """A function's signature, read once: binds calls to `args` and calls with final args."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.signature = inspect.signature(fn)
        self.params = list(self.signature.parameters.values())
        first = self.params[0] if self.params else None
        self.bound_self = first is not None and first.name in _SELF

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[
        dict[str, Any], dict[str, Any]
    ]:
        """(`args` for the action, opaque values passed through unchanged)."""
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        shown: dict[str, Any] = {}
        opaque: dict[str, Any] = {}
        for i, (name, value) in enumerate(bound.arguments.items()):
            kind = self.signature.parameters[name].kind
            if kind is _P.VAR_KEYWORD:
                for key, item in value.items():
                    _put(shown, opaque, key, item)
            elif kind is _P.VAR_POSITIONAL:
                _put(shown, opaque, name, list(value))
            elif i == 0 and self.bound_self:
                opaque[name] = value
            else:
                _put(shown, opaque, name, value)
        return shown, opaque

    def call(
        self, fn: Callable[..., Any], final: dict[str, Any], opaque: dict[str, Any],
        proposed: dict[str, Any],
    ) -> Any:
        """Call `fn` with the final args (edits applied, redacted values restored)."""
        values = restore_redacted(final, proposed)
        values.update(opaque)
        positional: list[Any] = []
        keywords: dict[str, Any] = {}
        by_keyword = False
        for p in self.params:
            if p.kind is _P.VAR_POSITIONAL:
                positional.extend(values.pop(p.name, ()))
            elif p.kind is _P.VAR_KEYWORD:
                keywords.update(values)
                values = {}
            elif p.name not in values:
                by_keyword = p.kind is not _P.POSITIONAL_ONLY
            elif p.kind is _P.KEYWORD_ONLY or (by_keyword and p.kind is _P.POSITIONAL_OR_KEYWORD):
                keywords[p.name] = values.pop(p.name)
            else:
                positional.append(values.pop(p.name))
        keywords.update(values)
        return fn(*positional, **keywords)


def _put(shown: dict[str, Any], opaque: dict[str, Any], name: str, value: Any) -> None:
    if jsonable(value):
        shown[name] = value
    else:
        shown[name] = f"<{type(value).__name__}: {value!r}>"[:200]
        opaque[name] = value


def restore_redacted(final: Any, proposed: Any) -> Any:
    """`final` with every `[redacted]` value put back from the proposal (the store masks
    the policy's `redact` paths, but the function must run with the real value)."""
    if isinstance(final, str) and final == MASK and proposed is not None and proposed != MASK:
        return proposed
    if isinstance(final, dict):
        source = proposed if isinstance(proposed, dict) else {}
        return {k: restore_redacted(v, source.get(k)) for k, v in final.items()}
    if isinstance(final, list) and isinstance(proposed, list) and len(final) == len(proposed):
        return [restore_redacted(a, b) for a, b in zip(final, proposed, strict=True)]
    return final
