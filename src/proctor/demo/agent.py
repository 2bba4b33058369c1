"""The demo's sample support agent: it classifies each ticket with the model it trained,
looks the order up (retrying once when the order service times out), refunds or replies,
and lets Proctor decide every step."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Any

import orjson

from .. import Denied, Proctor, ReviewPending
from ..runs import Run
from .model import NaiveBayes

TRAIN = 220  # the first bundled tickets train the classifier


def load_tickets() -> list[dict[str, Any]]:
    text = files("proctor.demo").joinpath("tickets.jsonl").read_text(encoding="utf-8")
    return [orjson.loads(line) for line in text.splitlines() if line.strip()]


def train(tickets: list[dict[str, Any]]) -> NaiveBayes:
    sample = tickets[:TRAIN]
    return NaiveBayes().fit([t["text"] for t in sample], [t["category"] for t in sample])


@dataclass
class Tally:
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, what: str, n: int = 1) -> None:
        self.counts[what] = self.counts.get(what, 0) + n


def _no_pace(seconds: float) -> None:
    """Live agents take the time they take."""


class SupportAgent:
    """Tools wrapped by Proctor; ``wait`` is how long a call may block for a human.

    ``pace(seconds)`` is told how long each step takes (the backdated history moves its
    clock with it); ``lookup_failures`` is the share of order look-ups that time out;
    ``export_attempts`` the share of tickets on which the model tries a customer export
    its envelope forbids.
    """

    def __init__(
        self,
        px: Proctor,
        *,
        wait: float | None = 0,
        seed: int = 11,
        pace: Callable[[float], None] = _no_pace,
    ) -> None:
        self.px = px
        self.rng = random.Random(seed)
        self.pace = pace
        self.lookup_failures = 0.02
        self.export_attempts = 0.01
        self.failed_run: str | None = None  # the last ticket's run, when it failed
        rng = self.rng

        @px.tool(agent="support-bot", reads=["orders"], wait=wait)
        def lookup_order(order_id: str) -> dict[str, Any]:
            if rng.random() < self.lookup_failures:
                self.pace(5.0)
                raise TimeoutError(f"order service timed out looking up {order_id}")
            self.pace(rng.uniform(0.08, 0.4))
            return {"order_id": order_id, "status": rng.choice(["shipped", "delivered", "paid"])}

        @px.tool(agent="support-bot", reversible=False, wait=wait)
        def issue_refund(order_id: str, amount: float, reason: str = "") -> str:
            self.pace(rng.uniform(0.3, 1.2))
            return f"refunded {amount:.2f} on {order_id}"

        @px.tool(agent="support-bot", wait=wait)
        def send_reply(ticket_id: str, text: str) -> str:
            self.pace(rng.uniform(0.1, 0.3))
            return f"replied to {ticket_id}"

        @px.tool(agent="support-bot", reads=["customers"])
        def export_customers(segment: str) -> str:
            raise AssertionError("never runs: not in the agent's envelope")

        self.lookup_order = lookup_order
        self.issue_refund = issue_refund
        self.send_reply = send_reply
        self.export_customers = export_customers

    def _think(self, run: Run) -> None:
        """One model call: it takes a moment and costs a little (``context.cost``)."""
        self.pace(self.rng.uniform(0.8, 3.5))
        run.update(cost=round(self.rng.uniform(0.002, 0.009), 4))

    def handle(self, ticket: dict[str, Any], model: NaiveBayes, tally: Tally) -> None:
        """Work one ticket in one run; a run whose order look-up fails twice fails."""
        category, confidence = model.predict(ticket["text"])
        self.failed_run = None
        run = self.px.run(
            agent="support-bot",
            ticket=ticket["id"],
            task_type=category,
            confidence=round(confidence, 3),
            sources=[f"tickets/{ticket['id']}", f"orders/{ticket['order']}"],
        )
        try:
            with run:
                self._work(run, ticket, category, tally)
        except TimeoutError:
            self.failed_run = run.id
            tally.add("run failed: order service down")

    def _lookup(self, run: Run, order: str, tally: Tally) -> None:
        self._think(run)
        try:
            self.lookup_order(order)
        except TimeoutError:
            tally.add("look-up timed out (exception for ops)")
            self.pace(2.0)
            self.lookup_order(order)  # once more; a second failure fails the run
            tally.add("look-up retried: ok")

    def _work(self, run: Run, ticket: dict[str, Any], category: str, tally: Tally) -> None:
        self._lookup(run, ticket["order"], tally)
        if category in ("refund", "billing"):
            self._think(run)
            try:
                result = self.issue_refund(
                    ticket["order"], ticket["amount"], reason=f"{category}: {ticket['text'][:60]}"
                )
                tally.add("refunded")
                reply = f"Done: {result}."
            except ReviewPending:
                tally.add("refund waiting for a human")
                reply = "A specialist is reviewing your refund and will confirm shortly."
        else:
            reply = f"Thanks for reaching out about your {category} question."
        if self.rng.random() < self.export_attempts:
            self._think(run)
            try:
                self.export_customers("all")
            except Denied:
                tally.add("data export denied")
        self._think(run)
        try:
            self.send_reply(ticket["id"], reply)
        except Denied:  # a refund the stage sent to a person holds the run's reply
            tally.add("reply held for a refund under review")
            return
        tally.add("replied")
