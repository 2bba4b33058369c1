"""What an MCP client sees when Proctor stops a call: a tool error (``isError``) whose text
says why, with the same facts under ``_meta["proctor/decision"]`` for programs.

The gateway and ``@gated`` both answer with these, so a client reads one shape.
"""

from __future__ import annotations

from typing import Any

from mcp.types import CallToolResult, TextContent

from ..._errors import (
    Conflict,
    Denied,
    InDoubt,
    ProctorError,
    Rejected,
    ReviewPending,
    StillRunning,
)
from ...sdk import Proctor

META_KEY = "proctor/decision"
KEY_META = "proctor/idempotency_key"


def bad_key() -> Denied:
    return Denied(
        f"_meta {KEY_META!r} must be a non-empty string of at most 200 characters",
        rule_ids=("mcp-meta",),
    )


def pending(px: Proctor, exc: ReviewPending) -> ReviewPending:
    """The pending review as its item tells it (a retry's own decision says only
    ``call-repeat``): the rule's reason, the rules that asked for it, the queue."""
    item = px.reviews.get(exc.item_id)
    return ReviewPending(
        f"{item.reason} (queue {item.queue})",
        item_id=item.id,
        rule_ids=item.rule_ids,
        decision_id=item.decision_id,
        policy_version=item.policy_version,
    )


def refusal(exc: ProctorError, *, tool: str, idempotency_key: str | None = None) -> CallToolResult:
    """The tool error for a call Proctor did not run (or has not run yet)."""
    facts: dict[str, Any] = {"tool": tool}
    if isinstance(exc, ReviewPending):
        facts |= {"status": "pending", "reason": exc.reason, "item_id": exc.item_id}
        text = (
            f"{tool} is waiting for a human review (item {exc.item_id}): {exc.reason}."
            f" Call again with the same _meta {KEY_META!r} to get its result once decided."
        )
    elif isinstance(exc, Rejected):
        facts |= {"status": "rejected", "reason": exc.reason}
        text = f"{tool} was rejected by a reviewer: {exc.reason}"
    elif isinstance(exc, Denied):
        facts |= {"status": "denied", "reason": exc.reason}
        text = f"{tool} was denied by policy: {exc.reason}"
    elif isinstance(exc, InDoubt):
        facts |= {"status": "in_doubt", "reason": str(exc), "item_id": exc.item_id or None}
        text = f"{tool} may or may not have happened; a person settles it: {exc}"
    elif isinstance(exc, StillRunning):
        facts |= {"status": "running", "reason": str(exc), "item_id": exc.item_id}
        text = f"{tool} is still running elsewhere; call again later: {exc}"
    elif isinstance(exc, Conflict):
        facts |= {"status": "conflict", "reason": str(exc)}
        text = f"{tool} was not run: its idempotency key was used with other arguments: {exc}"
    else:
        facts |= {"status": "error", "reason": str(exc)}
        text = f"{tool} was not run: {exc}"
    rule_ids = list(getattr(exc, "rule_ids", ()))
    facts["rule_ids"] = rule_ids
    if rule_ids:
        text += f" (rules: {', '.join(rule_ids)})"
    decision_id = getattr(exc, "decision_id", None)
    if decision_id:
        facts["decision_id"] = decision_id
    if idempotency_key is not None:
        facts["idempotency_key"] = idempotency_key
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        is_error=True,
        _meta={META_KEY: facts},
    )
