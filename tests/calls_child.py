"""A separate agent process for the call-identity tests: ``python calls_child.py MODE DB OUT``.

Every run of a tool body appends a line to OUT + ".effects" before anything else, so a test
can count side effects whatever happens to the process afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import sys

from proctor import Denied, Proctor

POLICY = """
policy: calls-test
defaults: {decision: deny, queue: billing}
queues: {billing: {}}
agents: {bot: {tools: [refund, lookup, ship]}}
rules:
  - {id: ok, when: 'tool in ["refund", "lookup", "ship"]', decide: allow}
  - {id: big, when: 'tool == "refund" && args.amount > 100.0', decide: review}
"""


def main() -> None:
    mode, db, out = sys.argv[1], sys.argv[2], sys.argv[3]
    px = Proctor(db)

    def say(**event: object) -> None:
        print(json.dumps(event), flush=True)

    @px.tool(agent="bot", key="order_id", wait=0)
    def refund(order_id: str, amount: float) -> str:
        with open(out + ".effects", "a") as fh:
            fh.write(f"{order_id} {amount}\n")
        if mode == "die-after-effect":
            os.kill(os.getpid(), signal.SIGKILL)  # the effect happened; no outcome recorded
        if mode == "hang-in-body":
            say(event="in-body")
            signal.pause()  # until the test kills it
        return f"refunded {amount} on {order_id}"

    @px.tool(agent="bot", wait=30 if mode == "sub-run-waits" else 0)
    def ship(order_id: str) -> str:
        with open(out + ".effects", "a") as fh:
            fh.write(f"ship {order_id}\n")
        return f"shipped {order_id}"

    if mode == "repeat":  # the same 50 calls, each asked many times
        for n in range(int(sys.argv[4])):
            refund(f"A-{n % 50}", 10.0)
        say(event="done")
    elif mode in ("die-after-effect", "hang-in-body"):
        say(event="calling")
        refund("A-1", 20.0)
    elif mode in ("sub-run", "sub-run-waits"):  # a delegated sub-agent working for PARENT
        with px.run(agent="bot", parent=sys.argv[4]):
            say(event="asking")
            try:
                say(event="ran", result=ship("S-1"))
            except Denied as refused:
                say(event="refused", rules=list(refused.rule_ids), reason=refused.reason)
    px.close()


if __name__ == "__main__":
    main()
