"""A separate agent process for the self-healing tests: ``python heal_child.py MODE DB OUT``.

Every run of a tool body appends a line to OUT + ".effects" first, so a test counts side
effects whatever happens to the process afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import sys

from proctor import Denied, Proctor


def main() -> None:
    mode, db, out = sys.argv[1], sys.argv[2], sys.argv[3]
    px = Proctor(db)

    def say(**event: object) -> None:
        print(json.dumps(event), flush=True)

    def effect(line: str) -> None:
        with open(out + ".effects", "a") as fh:
            fh.write(line + "\n")

    @px.tool(agent="bot")
    def charge(order: str) -> str:
        effect(f"charge {order}")
        if mode == "fail":
            raise ConnectionRefusedError("payments is down")
        return f"charged {order}"

    @px.tool(agent="bot")
    def step(n: int) -> str:
        effect(f"step {n}")
        if mode == "die-in-step-3" and n == 3:
            os.kill(os.getpid(), signal.SIGKILL)  # the effect happened; no outcome recorded
        return f"step {n} done"

    @step.reconcile
    def step_lookup(call: object) -> object:
        from proctor import Committed

        return Committed(f"step {call.args['n']} done (found)")  # type: ignore[attr-defined]

    if mode == "fail":  # fail until the breaker opens
        for n in range(int(sys.argv[4])):
            try:
                charge(f"A-{n}")
            except ConnectionRefusedError:
                pass
            except Denied as refused:
                say(event="refused", rules=list(refused.rule_ids), n=n)
                break
        say(event="done")
    elif mode == "ask":
        try:
            say(event="ran", result=charge("B-1"))
        except Denied as refused:
            say(event="refused", rules=list(refused.rule_ids), reason=refused.reason)
    elif mode in ("die-in-step-3", "resume"):
        run_id = sys.argv[4]
        with (
            px.run(agent="bot", resume=run_id)
            if mode == "resume"
            else px.run(agent="bot", durable=True) as run
        ):
            say(event="run", id=run.id)
            results = [step(n) for n in range(1, 6)]
            say(event="done", results=results)
    px.close()


if __name__ == "__main__":
    main()
