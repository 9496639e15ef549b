"""interlock in front of agents where they live: MCP, Claude Code hooks, agent frameworks."""
