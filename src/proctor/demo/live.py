"""The two agents the demo leaves waiting: refunds for customers waiting in a live chat.

Their items are opened before the console starts (so the demo can print their ids), with
business impact 1 (``context.impact``): they rank first in the billing queue. Served, each
agent then waits for a reviewer and runs the refund once it is approved.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .. import _clock
from .._errors import Denied, Rejected, ReviewPending
from ..sdk import Proctor
from .agent import SupportAgent

LIVE = (("A-LIVE-1", 880.0), ("A-LIVE-2", 640.0))
REASON = "damaged on arrival; the customer is waiting in the chat"


@dataclass(frozen=True)
class LiveRefund:
    item_id: str
    order_id: str
    amount: float


def open_live_refunds(px: Proctor) -> list[LiveRefund]:
    """Ask for both refunds now; each waits for a human in the billing queue."""
    agent = SupportAgent(px, wait=0, seed=100)
    live = []
    for n, (order_id, amount) in enumerate(LIVE, start=1):
        with px.run(
            agent="support-bot",
            ticket=f"LIVE-{n}",
            channel="chat",
            impact=1.0,
            confidence=0.96,
            sources=[f"chats/LIVE-{n}", f"orders/{order_id}"],
        ):
            try:
                agent.issue_refund(order_id, amount, reason=REASON)
            except ReviewPending as pending:
                live.append(LiveRefund(pending.item_id, order_id, amount))
    return live


def wait_and_run(url: str, refund: LiveRefund, say: Callable[[str], None]) -> None:
    """Block until a reviewer decides (at most until the item expires), then act on it."""
    with Proctor(url) as px:
        SupportAgent(px, wait=0, seed=100)  # registers issue_refund for px.resume
        item = px.reviews.get(refund.item_id)
        budget = max(0.0, (item.expires_at or _clock.now()) - _clock.now())
        px.backend.wait_while(refund.item_id, ("pending",), budget)
        who = f"live agent ({refund.order_id})"
        try:
            result = px.resume(refund.item_id)
        except Rejected as exc:
            say(f"[red]{who}:[/red] rejected: {exc.reason}")
        except ReviewPending:
            say(f"{who}: nobody decided in time")
        except Denied as exc:
            say(f"{who}: {exc.reason}")
        else:
            say(f"[green]{who}:[/green] approved, so it ran: {result}")
