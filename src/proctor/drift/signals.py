"""What a monitor reads from a log record: its value and its version, or nothing."""

from __future__ import annotations

from typing import Any

from ..policy.monitors import Monitor

REVIEW_KINDS = ("review.approve", "review.reject", "review.edit")


def kinds(monitor: Monitor) -> tuple[str, ...]:
    """The record kinds that carry the monitor's signal."""
    if monitor.signal == "outcome.error":
        return ("outcome",)
    if monitor.signal.startswith("review."):
        return REVIEW_KINDS
    return ("decision",)


def _path(record: dict[str, Any], dotted: str) -> Any:
    head, *rest = dotted.split(".")
    node: Any = record.get("action", {}).get(head)
    for part in rest:
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def matches(monitor: Monitor, record: dict[str, Any]) -> bool:
    if record.get("agent") != monitor.agent:
        return False
    return monitor.tool is None or record.get("tool") == monitor.tool


def value(monitor: Monitor, record: dict[str, Any]) -> Any:
    """The raw value of the signal in ``record`` (None: this record does not count)."""
    signal, kind = monitor.signal, record["kind"]
    if signal.startswith("decision."):
        return None if kind != "decision" else record.get("decision") == signal[9:]
    if signal == "outcome.error":
        outcome = record.get("outcome")
        return outcome == "error" if outcome in ("ok", "error") else None
    if signal.startswith("review."):
        return kind == signal if kind in REVIEW_KINDS else None
    return _path(record, signal) if kind == "decision" else None


def version(record: dict[str, Any], field: str | None) -> str | None:
    """The version a record was made under: its policy's, or a field of its action."""
    if field is None:
        return None
    found = record.get("policy_version") if field == "policy" else _path(record, field)
    return None if found is None else str(found)
