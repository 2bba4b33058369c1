"""An agent process on the remote SDK: ``python remote_child.py URL TOKEN OUT [SECONDS]``.

Blocks on one refund that needs approval; reports progress as JSON lines; every run of
the tool body appends to OUT + ".effects", then takes SECONDS (default 0).
"""

from __future__ import annotations

import json
import sys
import time

from proctor import Proctor


def main() -> None:
    url, token, out = sys.argv[1], sys.argv[2], sys.argv[3]
    body_seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
    px = Proctor(url=url, token=token, timeout=5.0)

    def say(**event: object) -> None:
        print(json.dumps(event), flush=True)

    @px.tool(agent="support-bot")
    def issue_refund(order_id: str, amount: float) -> str:
        with open(out + ".effects", "a") as fh:
            fh.write(f"{order_id} {amount} {time.time()}\n")
        time.sleep(body_seconds)
        return f"refunded {amount} on {order_id}"

    say(event="calling")
    say(event="returned", result=issue_refund("A-1", 250.0))
    px.close()


if __name__ == "__main__":
    main()
