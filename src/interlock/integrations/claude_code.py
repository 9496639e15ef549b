"""Claude Code's PreToolUse hook: each tool call Claude Code proposes, decided by interlock.

`action_of` maps the hook's JSON to an action; `answer` turns interlock's decision into the
hook's reply (`hookSpecificOutput.permissionDecision`: allow, deny or ask, with the reason).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from interlock.errors import BadInput

Permission = Literal["allow", "deny", "ask"]
#: Tools that only read: a low risk hint (it never lowers the policy's own class).
READ_ONLY_TOOLS = frozenset({"Read", "Glob", "Grep", "LS", "WebSearch", "TodoWrite"})
#: Tools that change files.
FILE_TOOLS = frozenset({"Edit", "MultiEdit", "Write", "NotebookEdit"})
#: How much of a written file or an edit goes into the reviewer's preview.
PREVIEW_LIMIT = 20_000


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """What the hook answers Claude Code."""

    permission: Permission
    """allow: run without asking; deny: refuse (Claude reads the reason); ask: the user decides."""
    reason: str
    """Shown to the user (ask) or to Claude (deny)."""
    updated_input: dict[str, Any] | None = None
    """The tool input a reviewer edited, when they approved with edits."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Fields for the log line (request id, decision)."""

    def to_json(self) -> dict[str, Any]:
        """The hook's stdout: `{"hookSpecificOutput": {...}}`."""
        out: dict[str, Any] = {
            "hookEventName": "PreToolUse",
            "permissionDecision": self.permission,
            "permissionDecisionReason": self.reason,
        }
        if self.updated_input is not None:
            out["updatedInput"] = self.updated_input
        return {"hookSpecificOutput": out}


def parse(text: str) -> dict[str, Any]:
    """The hook's stdin as an object, or BadInput in one line."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise BadInput(f"the hook input is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise BadInput("the hook input must be a JSON object")
    if not isinstance(data.get("tool_name"), str) or not data["tool_name"]:
        raise BadInput("the hook input has no `tool_name`")
    tool_input = data.get("tool_input", {})
    if not isinstance(tool_input, dict):
        raise BadInput("`tool_input` must be an object")
    event = data.get("hook_event_name", "PreToolUse")
    if event != "PreToolUse":
        raise BadInput(f"this hook answers PreToolUse, not `{event}`")
    return data


def action_of(hook: Mapping[str, Any]) -> dict[str, Any]:
    """The interlock action for a PreToolUse input: the tool name is the action, its input the
    args; MCP tools (`mcp__server__tool`) keep their name and record the server."""
    tool = str(hook["tool_name"])
    args = dict(hook.get("tool_input") or {})
    context: dict[str, Any] = {}
    for key in ("session_id", "cwd", "permission_mode", "tool_use_id"):
        if isinstance(hook.get(key), str):
            context[key] = hook[key]
    if isinstance(hook.get("session_id"), str):
        context["run_id"] = hook["session_id"]  # a session is one run of the agent
    action: dict[str, Any] = {"action": tool, "args": args}
    capabilities: list[str] = []
    if tool == "Bash":
        command = args.get("command")
        if isinstance(command, str):
            action["preview"] = {"kind": "text", "content": command[:PREVIEW_LIMIT]}
        capabilities.append("shell")
        if isinstance(args.get("description"), str):
            context["summary"] = args["description"]
    elif tool in FILE_TOOLS:
        capabilities.append("file_write")
        preview = _file_preview(tool, args)
        if preview is not None:
            action["preview"] = preview
    elif tool.startswith("mcp__"):
        _, _, rest = tool.partition("mcp__")
        server, _, name = rest.partition("__")
        context["mcp_server"] = server
        context["mcp_tool"] = name
        capabilities.append("mcp")
    if tool in READ_ONLY_TOOLS:
        action["risk"] = "low"
    if capabilities:
        action["capabilities"] = capabilities
    if context:
        action["context"] = context
    return action


def _file_preview(tool: str, args: Mapping[str, Any]) -> dict[str, Any] | None:
    path = args.get("file_path") or args.get("notebook_path")
    if tool == "Write" and isinstance(args.get("content"), str):
        return {"kind": "text", "content": f"{path}\n\n{args['content'][:PREVIEW_LIMIT]}"}
    edits = args.get("edits") if tool == "MultiEdit" else [args]
    if not isinstance(edits, list):
        return None
    lines = [f"--- {path}", f"+++ {path}"]
    for edit in edits:
        if not isinstance(edit, Mapping):
            continue
        old, new = edit.get("old_string"), edit.get("new_string")
        if isinstance(old, str) and isinstance(new, str):
            lines.append("@@")
            lines.extend("-" + line for line in old.splitlines())
            lines.extend("+" + line for line in new.splitlines())
    if len(lines) == 2:
        return None
    return {"kind": "diff", "content": "\n".join(lines)[:PREVIEW_LIMIT]}


def verdict_for(decision: str, reasons: list[str] | tuple[str, ...], *,
                rid: str | None = None) -> Verdict:
    """The answer for a policy decision, without waiting for anyone."""
    why = "; ".join(reasons) or "policy baseline"
    if decision in ("allow", "notify"):
        return Verdict(permission="allow", reason=f"interlock: {decision} ({why})")
    if decision == "require_approval":
        where = f" (interlock request {rid})" if rid else ""
        return Verdict(permission="ask",
                       reason=f"interlock: this needs a person's approval{where}: {why}")
    if decision == "suggest":
        return Verdict(permission="deny", reason=(
            f"interlock: only a person may carry this out ({why}); tell the user what you "
            "proposed and continue without it"))
    return Verdict(permission="deny", reason=f"interlock denied it: {why}")


def fail_closed(message: str) -> Verdict:
    """What the hook answers when it cannot decide: deny, saying why."""
    return Verdict(permission="deny",
                   reason=f"interlock could not decide ({message}); refusing to be safe")


def answer(text: str, decide: Callable[[dict[str, Any]], Verdict]) -> Verdict:
    """Parse the hook's stdin and decide; any failure is a deny-safe answer (raised as
    BadInput for bad input, so the caller can also print one line on stderr)."""
    return decide(action_of(parse(text)))
