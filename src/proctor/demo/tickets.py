"""Generate the demo's support tickets: ``python -m proctor.demo.tickets > tickets.jsonl``.

Deterministic (seeded), so the bundled file can always be regenerated and checked.
"""

from __future__ import annotations

import random
import sys
from typing import Any

import orjson

CATEGORIES: dict[str, dict[str, list[str]]] = {
    "refund": {
        "open": [
            "I want my money back for order {order}",
            "Please refund order {order}",
            "Requesting a refund for {order}",
            "Can I get a refund on {order}?",
        ],
        "why": [
            "the {item} arrived broken",
            "the {item} stopped working after two days",
            "I was charged for a {item} I returned",
            "the {item} is not what I ordered",
            "the {item} was damaged in the box",
        ],
    },
    "shipping": {
        "open": [
            "Where is my order {order}?",
            "Order {order} has not arrived",
            "Tracking for {order} has not moved",
            "Delivery of {order} is late",
        ],
        "why": [
            "the tracking page says in transit for a week",
            "the courier never came",
            "it was supposed to arrive on Monday",
            "the parcel shows delivered but it is not here",
            "I need the {item} before the weekend",
        ],
    },
    "account": {
        "open": [
            "I cannot log in to my account",
            "Please reset my password",
            "My account is locked",
            "How do I change the email on my account?",
        ],
        "why": [
            "the reset link does not arrive",
            "it says my password is wrong",
            "I moved and need to update my address",
            "two-factor codes are not working",
            "I want to close my account",
        ],
    },
    "billing": {
        "open": [
            "I was charged twice for {order}",
            "Wrong amount on my invoice for {order}",
            "Why is there a fee on {order}?",
            "My card was charged but {order} was cancelled",
        ],
        "why": [
            "the bank statement shows two payments",
            "the invoice total does not match the cart",
            "I never agreed to express shipping",
            "the discount code was not applied",
            "the VAT number is missing on the invoice",
        ],
    },
    "product": {
        "open": [
            "Question about the {item}",
            "Does the {item} work with my setup?",
            "Is the {item} back in stock?",
            "What size is the {item}?",
        ],
        "why": [
            "I want to know the battery life",
            "the manual does not say",
            "I need it to be compatible with my charger",
            "I am choosing between two models",
            "I want to buy three for the office",
        ],
    },
}
ITEMS = [
    "kettle",
    "headphones",
    "desk lamp",
    "backpack",
    "phone case",
    "blender",
    "monitor",
    "keyboard",
    "coffee grinder",
    "rain jacket",
    "yoga mat",
    "router",
]
CLOSINGS = ["Thanks.", "Please help.", "This is urgent.", "Regards, {name}", "Thank you!", ""]
NAMES = ["Ana", "Ben", "Chloé", "Dev", "Emre", "Fatima", "Grace", "Hiro", "Ines", "Jon"]


WEIGHTS = (30, 25, 15, 15, 15)  # refund, shipping, account, billing, product


def generate(
    count: int = 320, seed: int = 7, weights: tuple[int, ...] = WEIGHTS
) -> list[dict[str, Any]]:
    """``count`` tickets; ``weights`` sets the mix of categories (a courier's outage brings
    shipping questions)."""
    rng = random.Random(seed)
    tickets = []
    for n in range(count):
        category = rng.choices(list(CATEGORIES), weights=weights)[0]
        parts = CATEGORIES[category]
        order = f"A-{rng.randint(10000, 99999)}"
        fill = {"order": order, "item": rng.choice(ITEMS), "name": rng.choice(NAMES)}
        text = " ".join(
            x
            for x in (
                rng.choice(parts["open"]).format(**fill) + ":",
                rng.choice(parts["why"]).format(**fill) + ".",
                rng.choice(CLOSINGS).format(**fill),
            )
            if x
        )
        if rng.random() < 0.12:  # some tickets mention a second topic: harder to classify
            other = rng.choice([c for c in CATEGORIES if c != category])
            text += " Also, " + rng.choice(CATEGORIES[other]["why"]).format(**fill) + "."
        amount = round(
            rng.choice([rng.uniform(8, 90), rng.uniform(90, 400), rng.uniform(400, 1400)]), 2
        )
        tickets.append(
            {
                "id": f"T-{n + 1:04d}",
                "category": category,
                "order": order,
                "amount": amount,
                "customer": fill["name"],
                "text": text,
            }
        )
    return tickets


def main() -> None:
    for ticket in generate():
        sys.stdout.write(orjson.dumps(ticket).decode() + "\n")


if __name__ == "__main__":
    main()
