"""A separate agent process for the review tests: ``python review_child.py MODE DB OUT [ITEM]``.

Every run of a tool body appends a line to OUT + ".effects" (so a test can count side
effects), and the process reports progress as JSON lines on stdout.
"""

from __future__ import annotations

import json
import sys
import time

from proctor import Proctor, ReviewPending


def main() -> None:
    mode, db, out = sys.argv[1], sys.argv[2], sys.argv[3]
    px = Proctor(db)

    def say(**event: object) -> None:
        print(json.dumps(event), flush=True)

    @px.tool(agent="bot", wait=None if mode in ("wait", "slow-body") else 0)
    def refund(order_id: str, amount: float) -> dict[str, object]:
        with open(out + ".effects", "a") as fh:
            fh.write(f"{order_id} {amount} {time.time()}\n")
        say(event="body-start", at=time.time(), amount=amount)
        if mode == "slow-body":
            time.sleep(60)
        return {"refunded": amount, "order": order_id}

    if mode in ("wait", "slow-body"):
        say(event="calling")
        result = refund("A-1", 250.0)
        say(event="returned", result=result)
    elif mode == "pending":
        try:
            refund("A-1", 250.0)
        except ReviewPending as pending:
            say(event="pending", item=pending.item_id)
        time.sleep(60)  # to be killed
    elif mode == "resume":
        say(event="resumed", result=px.resume(sys.argv[4]))
    elif mode == "decide":  # one of many reviewers racing on one item
        from proctor import Conflict

        item, n = sys.argv[4], int(sys.argv[5])
        try:
            if n % 2:
                px.reviews.approve(item, by=f"r{n}")
            else:
                px.reviews.reject(item, by=f"r{n}", reason="no")
            say(event="won")
        except Conflict:
            say(event="conflict")
    elif mode == "review-all":  # a reviewer working through the queue, to be killed
        for item in px.reviews.list():
            px.reviews.approve(item.id, by="night-shift")
            say(event="approved", item=item.id)
    px.close()


if __name__ == "__main__":
    main()
