"""A child agent process for the SDK tests: submit and wait, or resume, or race to resume."""

from __future__ import annotations

import json
import sys

from interlock import Action, AlreadyClaimed, Gate


def fail_if_asked(request: object) -> None:
    print("ASKED", flush=True)
    raise SystemExit(3)


def main() -> None:
    mode, policy, db, state = sys.argv[1:5]
    if mode == "submit-and-wait":
        gate = Gate.from_policy(policy, db=db, channel="web", agent="bot", state_dir=state)
        ticket = gate.submit(Action(action="send_payment", capabilities=["payment"],
                                    args={"to": "acme", "amount": 70},
                                    checkpoint={"step": 3, "notes": ["fetched invoice"]}))
        print(ticket.id, flush=True)
        gate.resume(ticket.id)  # blocks until decided; the test kills us here
        print("RESUMED-IN-FIRST-PROCESS", flush=True)
    elif mode == "resume":
        gate = Gate.from_policy(policy, db=db, channel=fail_if_asked, agent="bot",
                                state_dir=state)
        resumed = gate.resume(sys.argv[5])
        gate.report(resumed.id, "succeeded", "paid")
        print(json.dumps({"args": resumed.args, "checkpoint": resumed.checkpoint}), flush=True)
    elif mode == "race":
        gate = Gate.from_policy(policy, db=db, channel="web", agent="bot", state_dir=state)
        try:
            gate.resume(sys.argv[5], lambda **args: print("RAN", flush=True))
        except AlreadyClaimed:
            print("CLAIMED-ELSEWHERE", flush=True)


if __name__ == "__main__":
    main()
