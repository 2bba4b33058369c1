"""Tools described by a JSON Schema (an MCP server's, a framework's): reviewers' edits are
checked against the schema, and a misspelled parameter is refused."""

from __future__ import annotations

from typing import Any

import pytest

from proctor import InvalidRequest, Proctor, ReviewPending
from proctor.review.params import from_json_schema

POLICY = """
policy: schema-test
defaults: {decision: deny, queue: billing}
queues: {billing: {}}
agents: {bot: {tools: [refund]}}
rules:
  - {id: big, when: 'args.amount > 100.0', decide: review}
  - {id: small, when: 'args.amount <= 100.0', decide: allow}
"""

REFUND = {
    "type": "object",
    "properties": {
        "order_id": {"type": "string"},
        "amount": {"type": "number"},
        "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
    },
    "required": ["order_id", "amount"],
}


def test_a_json_schema_becomes_the_tools_parameters() -> None:
    params = from_json_schema(REFUND)
    assert params == {
        "params": {
            "order_id": {"type": "str", "required": True, "nullable": False},
            "amount": {"type": "float", "required": True, "nullable": False},
            "note": {"type": "str", "required": False, "nullable": True},
        },
        "extra": False,
    }
    assert from_json_schema({**REFUND, "additionalProperties": True})["extra"] is True
    with pytest.raises(InvalidRequest, match="JSON Schema object"):
        from_json_schema({"type": "array"})


def test_edits_of_a_schema_tool_are_checked_against_its_schema(db_url: str) -> None:
    with Proctor(db_url) as px:
        px.policy.apply(POLICY)
        sent: list[dict[str, Any]] = []

        @px.tool(agent="bot", name="refund", wait=0, schema=REFUND)
        def refund(**args: Any) -> str:
            sent.append(args)
            return "ok"

        with pytest.raises(ReviewPending) as pending:
            refund(order_id="A-1", amount=995.0)
        item = pending.value.item_id
        with pytest.raises(InvalidRequest, match="no parameter 'amout'"):
            px.reviews.edit(item, by="bill", args={"amout": 150.0})
        with pytest.raises(InvalidRequest, match="'amount' must be float"):
            px.reviews.edit(item, by="bill", args={"amount": "150"})
        assert sent == []
        px.reviews.edit(item, by="bill", args={"amount": 90.0})
        assert px.resume(item) == "ok"
        assert sent == [{"order_id": "A-1", "amount": 90.0}]
