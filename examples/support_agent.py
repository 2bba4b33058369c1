"""A small support agent whose every tool call passes Proctor's gate.

Run: python examples/support_agent.py  (uses PROCTOR_DATABASE_URL or ./.proctor/proctor.db)
"""

from __future__ import annotations

import random
from importlib.resources import files

import proctor

px = proctor.Proctor()
px.policy.apply(files("proctor").joinpath("examples/support-desk.yaml").read_text())


@px.tool(agent="support-bot", reads=["orders"], wait=0)
def lookup_order(order_id: str) -> dict[str, object]:
    return {"id": order_id, "total": round(random.uniform(5, 900), 2)}


@px.tool(agent="support-bot", wait=0)
def issue_refund(order_id: str, amount: float) -> str:
    return f"refunded {amount:.2f} on {order_id}"


@px.tool(agent="support-bot", wait=0)
def send_reply(ticket: str, text: str) -> str:
    return "sent"


@px.tool(agent="support-bot", name="delete_account")
def delete_account(customer: str) -> None:
    raise RuntimeError("never reached: not in the agent's envelope")


def main() -> None:
    random.seed(7)
    outcomes: dict[str, int] = {}
    for n in range(1, 41):
        ticket = f"T-{n:04d}"
        with px.run(
            agent="support-bot", confidence=round(random.uniform(0.5, 1.0), 2), ticket=ticket
        ):
            try:
                order = lookup_order(f"A-{n:04d}")
                issue_refund(str(order["id"]), float(order["total"]) / 4)  # type: ignore[arg-type]
                send_reply(ticket, "Your refund is on its way.")
                outcome = "refunded"
            except proctor.ReviewPending:
                # wait=0: the agent moves on; a reviewer decides from the queue.
                outcome = "waiting for a reviewer"
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    try:
        delete_account("C-1")
    except proctor.Denied as denied:
        print(f"denied as expected: {denied.reason}")
    print(", ".join(f"{v} {k}" for k, v in sorted(outcomes.items())))
    pending_items = px.reviews.list()
    print(f"{len(pending_items)} review items pending, most risky first:")
    for item in pending_items[:5]:
        print(f"  {item.id}  {item.queue:<8} {item.tool:<13} {item.args}  ({item.reason})")
    px.close()


if __name__ == "__main__":
    main()
