"""A writer of generated Python source, for the compiled rule tests and CEL fast paths.

Only the validated policy ever reaches it: plain strings and finite numbers become `repr`
literals, every other value is handed to the code by name, never spliced into the text.
"""

from __future__ import annotations

import builtins
import math
from typing import Any


class SourceWriter:
    """Indented lines of Python and the names they refer to."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.names: dict[str, Any] = {}
        self.fields: dict[str, str] = {}
        """Action field -> the local that holds it (see `field`)."""
        self._count = 0

    def line(self, depth: int, text: str) -> None:
        self.lines.append("    " * depth + text)

    def bind(self, value: Any, stem: str) -> str:
        """A fresh name for `value`."""
        name = f"{stem}_{len(self.names)}"
        self.names[name] = value
        return name

    def name(self, name: str, value: Any) -> str:
        """`name` for `value`, a well-known object such as a sentinel or helper."""
        assert self.names.setdefault(name, value) is value, name
        return name

    def fresh(self, stem: str) -> str:
        """A local variable name used nowhere else in this source."""
        self._count += 1
        return f"{stem}{self._count}"

    def field(self, name: str) -> str:
        """The local holding the action's top-level field `name` (MISSING when absent).

        Each field is read once, at the top of the function (`field_loads`), however
        many tests look at it.
        """
        local = self.fields.get(name)
        if local is None:
            local = self.fields[name] = f"f{len(self.fields)}"
        return local

    def field_loads(self, depth: int, missing: str) -> list[str]:
        """The lines that load every field `field` handed out, for the top of the function."""
        return [f"{'    ' * depth}{local} = a.get({self.const(name)}, {missing})"
                for name, local in self.fields.items()]

    def const(self, value: Any) -> str:
        """A literal for plain strings, numbers, booleans and null; other values by name."""
        t = type(value)
        if t is str:
            return repr(value)
        if t is int or (t is float and math.isfinite(value)):
            return f"({value!r})"  # parenthesised: a negative number is an expression
        if value is None or value is True or value is False:
            return repr(value)
        return self.bind(value, "k")

    def run(self, filename: str) -> dict[str, Any]:
        """Execute the source; returns its namespace."""
        namespace: dict[str, Any] = {"__builtins__": builtins, **self.names}
        exec(compile("\n".join(self.lines) + "\n", filename, "exec"), namespace)
        return namespace
