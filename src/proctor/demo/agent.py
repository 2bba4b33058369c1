"""The demo's sample support agent: it classifies each ticket with the model it trained,
looks the order up, refunds or replies, and lets Proctor decide every step."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Any

import orjson

from .. import Denied, Proctor, ReviewPending
from .model import NaiveBayes

TRAIN = 220  # the first tickets train the classifier; the agent works through all of them


def load_tickets() -> list[dict[str, Any]]:
    text = files("proctor.demo").joinpath("tickets.jsonl").read_text(encoding="utf-8")
    return [orjson.loads(line) for line in text.splitlines() if line.strip()]


def train(tickets: list[dict[str, Any]]) -> NaiveBayes:
    sample = tickets[:TRAIN]
    return NaiveBayes().fit([t["text"] for t in sample], [t["category"] for t in sample])


@dataclass
class Tally:
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1


class SupportAgent:
    """Tools wrapped by Proctor; ``wait`` is how long a call may block for a human."""

    def __init__(self, px: Proctor, *, wait: float | None = 0, seed: int = 11) -> None:
        self.px = px
        self.rng = random.Random(seed)
        rng = self.rng

        @px.tool(agent="support-bot", reads=["orders"], wait=wait)
        def lookup_order(order_id: str) -> dict[str, Any]:
            if rng.random() < 0.05:
                raise TimeoutError(f"order service timed out looking up {order_id}")
            return {"order_id": order_id, "status": rng.choice(["shipped", "delivered", "paid"])}

        @px.tool(agent="support-bot", wait=wait)
        def issue_refund(order_id: str, amount: float, reason: str = "") -> str:
            return f"refunded {amount:.2f} on {order_id}"

        @px.tool(agent="support-bot", wait=wait)
        def send_reply(ticket_id: str, text: str) -> str:
            return f"replied to {ticket_id}"

        @px.tool(agent="support-bot", reads=["customers"])
        def export_customers(segment: str) -> str:
            raise AssertionError("never runs: not in the agent's envelope")

        self.lookup_order = lookup_order
        self.issue_refund = issue_refund
        self.send_reply = send_reply
        self.export_customers = export_customers

    def handle(self, ticket: dict[str, Any], model: NaiveBayes, tally: Tally) -> None:
        category, confidence = model.predict(ticket["text"])
        with self.px.run(
            agent="support-bot",
            ticket=ticket["id"],
            category=category,
            confidence=round(confidence, 3),
            sources=[f"tickets/{ticket['id']}", f"orders/{ticket['order']}"],
        ):
            try:
                self.lookup_order(ticket["order"])
            except TimeoutError:
                tally.add("lookup failed (sent to ops)")
                return
            if category in ("refund", "billing"):
                try:
                    result = self.issue_refund(
                        ticket["order"],
                        ticket["amount"],
                        reason=f"{category}: {ticket['text'][:60]}",
                    )
                    tally.add("refunded")
                    reply = f"Done: {result}."
                except ReviewPending:
                    tally.add("refund waiting for a human")
                    reply = "A specialist is reviewing your refund and will confirm shortly."
            else:
                reply = f"Thanks for reaching out about your {category} question."
            self.send_reply(ticket["id"], reply)
            tally.add("replied")

    def try_forbidden_export(self, tally: Tally) -> None:
        try:
            self.export_customers("all")
        except Denied:
            tally.add("data export denied")
