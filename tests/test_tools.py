"""``@px.tool``'s messages: a pending review says which item and how to decide it."""

from __future__ import annotations

import pytest

from proctor import Proctor, ReviewPending

POLICY = """
policy: tools-test
defaults: {decision: deny, queue: billing}
queues: {billing: {sla: 30m}}
agents: {bot: {tools: [refund]}}
rules:
  - {id: big, when: 'tool == "refund" && args.amount > 100.0', decide: review,
     reason: Refunds over 100 need a billing lead.}
  - {id: ok, when: 'tool == "refund"', decide: allow}
"""


def test_review_pending_names_the_item_and_the_command_that_decides_it(sqlite_url: str) -> None:
    with Proctor(sqlite_url) as px:
        px.policy.apply(POLICY)

        @px.tool(agent="bot", wait=0)
        def refund(amount: float) -> str:
            return f"refunded {amount}"

        @px.tool(agent="bot", name="refund", wait=0.05)
        def refund_waiting(amount: float) -> str:
            return f"refunded {amount}"

        with pytest.raises(ReviewPending) as now:
            refund(250.0)
        item = now.value.item_id
        assert str(now.value) == (
            f"review item {item} waits for a human in queue 'billing': Refunds over 100 need a"
            f" billing lead. Decide it in the console, or: proctor queue approve {item} --by NAME"
        )
        with pytest.raises(ReviewPending) as later:
            refund_waiting(300.0)
        assert f"no reviewer has decided review item {later.value.item_id} yet." in str(later.value)
        with pytest.raises(ReviewPending) as resumed:
            px.resume(item)
        assert str(resumed.value).endswith(f"proctor queue approve {item} --by NAME")
