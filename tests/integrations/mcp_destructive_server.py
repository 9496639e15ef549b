"""A small MCP server for the gateway tests: a read-only tool, a destructive one that counts
its executions in the file named by MCP_TEST_COUNTS, a resource and a prompt."""

from __future__ import annotations

import json
import os
from pathlib import Path

from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations

server = MCPServer("files-under-test", version="1.0")
COUNTS = Path(os.environ.get("MCP_TEST_COUNTS", "counts.json"))


def _count(name: str, args: dict[str, object]) -> int:
    runs = json.loads(COUNTS.read_text()) if COUNTS.exists() else []
    runs.append({"tool": name, "args": args})
    COUNTS.write_text(json.dumps(runs))
    return len(runs)


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def read_file(path: str) -> str:
    """Read a file (pretend)."""
    _count("read_file", {"path": path})
    return f"contents of {path}"


@server.tool(annotations=ToolAnnotations(destructive_hint=True, read_only_hint=False))
def delete_file(path: str) -> str:
    """Delete a file (pretend)."""
    _count("delete_file", {"path": path})
    return f"deleted {path}"


@server.resource("notes://readme")
def readme() -> str:
    """A resource, to show resources pass through."""
    return "hello from the downstream server"


@server.prompt()
def review(topic: str) -> str:
    """A prompt, to show prompts pass through."""
    return f"Please review {topic}."


if __name__ == "__main__":
    server.run()
