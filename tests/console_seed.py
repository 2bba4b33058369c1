"""A database with the work a real review desk has: a few days of decisions over several
agents, tools and queues, most reviews decided, and 140+ items still waiting, some of them
past their SLA. Times are backdated with ``proctor._clock.simulated``.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from proctor import Denied, Proctor, ReviewPending
from proctor._clock import simulated

POLICY = """
policy: support-desk-load
defaults: {decision: deny, queue: billing, review_timeout: 30d}
queues:
  billing: {sla: 30m, escalate_to: finance}
  finance: {sla: 2h}
  qa: {sla: 4h}
  ops: {sla: 1h}
  legal-and-compliance-review: {sla: 8h}
agents:
  support-bot: {tools: [issue_refund, lookup_order, send_reply]}
  billing-agent-eu-west-production-2: {tools: [issue_credit, close_account]}
  ops-bot: {tools: [restart_service, delete_file]}
risk: >-
  (has(args.amount) ? (args.amount > 2000.0 ? 0.9 : args.amount / 2500.0) : 0.0)
  + (action.reversible ? 0.0 : 0.3)
rules:
  - {id: routine, when: 'tool in ["issue_refund", "lookup_order", "send_reply",
     "issue_credit", "restart_service"]', decide: allow}
  - {id: large-refund, when: 'tool == "issue_refund" && args.amount > 100.0', decide: review,
     queue: billing, reason: Refunds over 100 need a billing lead}
  - {id: huge-refund, when: 'tool == "issue_refund" && args.amount > 5000.0', decide: deny,
     reason: Refunds over 5000 are never automatic}
  - {id: credit, when: 'tool == "issue_credit" && args.amount > 500.0', decide: review,
     queue: finance, reason: Credits over 500 need finance}
  - {id: closing, when: 'tool == "close_account"', decide: review,
     queue: legal-and-compliance-review,
     reason: Closing an account ends a contract; legal checks the notice period}
  - {id: replies, when: 'tool == "send_reply" && args.body.size() > 400', decide: review,
     queue: qa, reason: Long replies are checked before they go out}
  - {id: deletes, when: 'tool == "delete_file"', decide: review, queue: ops,
     reason: Deleting files on a production host}
  - {id: restarts, when: 'tool == "restart_service" && args.service == "payments"',
     decide: review, queue: ops, reason: Payments restarts drop live sessions}
"""

LONG_BODY = (
    "Dear customer, thank you for your patience while we looked into order {order}. "
    "We found that the parcel was returned to our warehouse after two failed delivery "
    "attempts, so we have arranged a new shipment at no cost and added a voucher to your "
    "account for the trouble. You will receive tracking details within one working day. "
    "If anything else is wrong, reply to this message and the same team will pick it up. "
    "Kind regards, the support desk."
)


@dataclass
class Seeded:
    pending: int
    by_queue: Counter[str]
    decisions: int
    first: float
    last: float
    item_ids: list[str] = field(default_factory=list)


def _tools(px: Proctor) -> dict[str, Any]:
    """The agents' tools, behind the gate, raising at once on review (wait=0)."""

    @px.tool(agent="support-bot", wait=0)
    def issue_refund(order_id: str, amount: float) -> str:
        return f"refunded {amount} on {order_id}"

    @px.tool(agent="support-bot", wait=0)
    def lookup_order(order_id: str) -> str:
        return f"order {order_id}: shipped"

    @px.tool(agent="support-bot", wait=0)
    def send_reply(ticket: str, body: str) -> str:
        return f"sent on {ticket}"

    @px.tool(agent="billing-agent-eu-west-production-2", wait=0)
    def issue_credit(customer: str, amount: float, memo: str) -> str:
        return f"credited {amount}"

    @px.tool(agent="billing-agent-eu-west-production-2", wait=0, reversible=False)
    def close_account(customer: str, reason: str, effective: str) -> str:
        return f"closed {customer}"

    @px.tool(agent="ops-bot", wait=0)
    def restart_service(service: str, host: str) -> str:
        return f"restarted {service}"

    @px.tool(agent="ops-bot", wait=0, reversible=False)
    def delete_file(path: str, host: str) -> str:
        return f"deleted {path}"

    return {
        f.__name__: f
        for f in (
            issue_refund,
            lookup_order,
            send_reply,
            issue_credit,
            close_account,
            restart_service,
            delete_file,
        )
    }


def _routine(rng: random.Random) -> tuple[str, dict[str, Any]]:
    """An action the policy mostly allows."""
    n = rng.randrange(10_000, 99_999)
    return rng.choice(
        [
            ("lookup_order", {"order_id": f"A-{n}"}),
            ("issue_refund", {"order_id": f"A-{n}", "amount": round(rng.uniform(5, 95), 2)}),
            ("send_reply", {"ticket": f"T-{n}", "body": "Thanks, it is on its way."}),
            ("issue_credit", {"customer": f"C-{n}", "amount": 40.0, "memo": "goodwill"}),
            ("restart_service", {"service": "search", "host": f"web-{n % 7}"}),
            ("issue_refund", {"order_id": f"A-{n}", "amount": 9000.0}),  # denied
        ]
    )


def _reviewed(rng: random.Random, queue: str | None = None) -> tuple[str, dict[str, Any]]:
    """An action the policy sends to a human, in ``queue`` when given."""
    n = rng.randrange(10_000, 99_999)
    choices = {
        "billing": (
            "issue_refund",
            {"order_id": f"A-{n}", "amount": round(rng.uniform(101, 2400), 2)},
        ),
        "finance": (
            "issue_credit",
            {
                "customer": f"C-{n}",
                "amount": round(rng.uniform(501, 4000), 2),
                "memo": "service outage compensation, contract clause 14.2(b), region eu-west",
            },
        ),
        "qa": ("send_reply", {"ticket": f"T-{n}", "body": LONG_BODY.format(order=f"A-{n}")}),
        "ops": rng.choice(
            [
                (
                    "delete_file",
                    {
                        "path": f"/var/lib/app/exports/customer-{n}-full-history-export.csv.gz",
                        "host": f"db-{n % 3}",
                    },
                ),
                ("restart_service", {"service": "payments", "host": f"pay-{n % 4}"}),
            ]
        ),
        "legal-and-compliance-review": (
            "close_account",
            {
                "customer": f"C-{n}",
                "reason": "customer request by email",
                "effective": "2025-07-01",
            },
        ),
    }
    queue = queue or rng.choices(list(choices), weights=[6, 3, 2, 2, 1])[0]
    return choices[queue]


def seed(
    px: Proctor,
    *,
    pending: int = 146,
    days: float = 3.0,
    decisions: int = 1500,
    now: float | None = None,
    rng_seed: int = 7,
) -> Seeded:
    """Apply the load policy and record ``days`` of history ending at ``now``, leaving
    ``pending`` items waiting: about a sixth of them days old, the rest from the last hours."""
    now = time.time() if now is None else now
    rng = random.Random(rng_seed)
    px.policy.apply(POLICY, author="pat", message="load policy")
    tools = _tools(px)
    clock = [now - days * 86400]
    events: list[tuple[float, str, Any]] = []
    start, history_end = now - days * 86400, now - 3 * 3600
    for _ in range(decisions):
        t = rng.uniform(start, history_end)
        events.append((t, "call", _reviewed(rng) if rng.random() < 0.18 else _routine(rng)))
    old_pending = pending // 6
    for _ in range(old_pending):
        events.append((rng.uniform(start, history_end), "keep", _reviewed(rng)))
    for _ in range(pending - old_pending):
        events.append((rng.uniform(now - 3 * 3600, now - 60), "keep", _reviewed(rng)))
    events.sort(key=lambda e: e[0])
    decide_at: list[tuple[float, str, bool]] = []
    seeded = Seeded(0, Counter(), 0, events[0][0], events[-1][0])

    def decide_until(t: float) -> None:
        while decide_at and decide_at[0][0] <= t:
            at, item_id, ok = decide_at.pop(0)
            clock[0] = at
            if ok:
                px.reviews.approve(item_id, by=rng.choice(["ana", "ben"]))
            else:
                px.reviews.reject(item_id, by="ana", reason="not covered by the terms")

    with simulated(lambda: clock[0]):
        for t, what, (tool, args) in events:
            decide_until(t)
            clock[0] = t
            seeded.decisions += 1
            try:
                tools[tool](**args)
            except Denied:
                pass
            except ReviewPending as exc:
                if what == "keep":
                    seeded.item_ids.append(exc.item_id)
                    seeded.pending += 1
                    seeded.by_queue[px.reviews.get(exc.item_id).queue] += 1
                else:
                    decide_at.append((t + rng.uniform(60, 5400), exc.item_id, rng.random() < 0.75))
                    decide_at.sort()
        decide_until(now)
    return seeded
