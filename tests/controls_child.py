"""A deciding process for the lifecycle tests: ``python controls_child.py MODE DB OUT N``.

``decide``: N decisions in a row, printing each decision's seq.
``work``: calls a tool in a loop (N calls), appending each body's start time to OUT.
``limited``: N calls of a limited tool, printing allowed/denied for each.
"""

from __future__ import annotations

import sys
import time

from proctor import Denied, Proctor
from proctor.policy import Action


def main() -> None:
    mode, db, out, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    px = Proctor(db)
    if mode == "decide":
        for i in range(n):
            v = px.gate.decide(Action("bot", "pay", {"amount": float(i % 200)}), None)
            print(v.seq, flush=True)
        return

    @px.tool(agent="bot", wait=0)
    def pay(amount: float) -> str:
        with open(out, "a") as fh:
            fh.write(f"{time.time()!r}\n")
        return "paid"

    for i in range(n):
        try:
            pay(float(i % 50))
            if mode == "limited":
                print("allowed", flush=True)
        except Denied as denied:
            if mode == "limited":
                print("denied " + ",".join(denied.rule_ids), flush=True)
            else:
                time.sleep(0.001)


if __name__ == "__main__":
    main()
