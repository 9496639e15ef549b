"""A second process: resumes a paused OpenAI Agents run from its serialized state."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from oa_helpers import billing_agent

from interlock import Gate
from interlock.integrations.openai_agents import resume


async def main(workdir: Path) -> None:
    gate = Gate.from_policy(workdir / "interlock.yaml", db=f"sqlite:///{workdir / 'interlock.db'}",
                            channel="web", agent="oa-bot", state_dir=workdir / "state",
                            poll=0.01)
    ran: list[str] = []
    agent = billing_agent(gate, ran)  # a fresh model: only the turn after the tool remains
    result = await resume(gate, agent, (workdir / "state.json").read_text(), timeout=30)
    print(json.dumps({"ran": ran, "output": result.final_output}))
    gate.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
