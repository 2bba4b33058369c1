"""Outcomes that may be unknown, and settling them by asking the tool's own system.

A tool whose body raised an error that may have committed (a timeout, a dropped
connection), or whose runner died after the claim, leaves its call ``unknown``. A repeat
never runs it blindly: the tool's lookup (``@issue_refund.reconcile``) asks its own system,
by the call's identity and within a time limit, whether the effect happened, and answers
``Committed(result)``, ``NotCommitted()`` or ``Conflicting(evidence)``. A lookup that raises
or overruns is ``unavailable``. Without a lookup, a person settles it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ._errors import InDoubt
from ._timed import TimeLimit, within
from .execution.calls import CallState, Settlement

if TYPE_CHECKING:
    from .calls import Call
    from .sdk import Proctor
    from .tools import ToolSpec

LOOKUP_SECONDS = 10.0  # how long a lookup may take before its answer counts as unavailable

# Errors that may have happened after the effect: the request may have reached the other
# side. A refused connection, a DNS failure or a rejected request never committed.
AMBIGUOUS = (TimeoutError, ConnectionResetError, ConnectionAbortedError, BrokenPipeError)
AMBIGUOUS_NAMES = frozenset(
    {"ReadTimeout", "WriteTimeout", "RemoteProtocolError", "ReadError", "ServerDisconnectedError"}
)


@dataclass(frozen=True)
class Committed:
    """The lookup found the effect: the call happened, and ``result`` is what it returned."""

    result: Any = None


@dataclass(frozen=True)
class NotCommitted:
    """The lookup is sure the effect did not happen: the call may run once more."""


@dataclass(frozen=True)
class Conflicting:
    """The lookup found something that does not match the call (another amount, say)."""

    evidence: str


def is_ambiguous(spec: ToolSpec, error: BaseException) -> bool:
    """Whether ``error`` may have come after the effect, by the tool's declared set."""
    if spec.ambiguous is not None:
        return isinstance(error, spec.ambiguous)
    return isinstance(error, AMBIGUOUS) or type(error).__name__ in AMBIGUOUS_NAMES


def ask(lookup: Any, call: Call, seconds: float = LOOKUP_SECONDS) -> Settlement:
    """Run the lookup on a thread of its own with a time limit; its answer as a settlement."""
    try:
        found = within(seconds, "proctor-reconcile", lookup, call)
    except TimeLimit:
        return Settlement("unavailable", evidence=f"the lookup took longer than {seconds:g} s")
    except Exception as exc:  # noqa: BLE001 - a lookup's failure is its answer: unavailable
        return Settlement("unavailable", evidence=f"the lookup failed: {type(exc).__name__}: {exc}")
    if isinstance(found, Committed):
        return Settlement("committed", result=found.result, evidence="the lookup found it")
    if isinstance(found, NotCommitted):
        return Settlement("not_committed", evidence="the lookup found nothing")
    if isinstance(found, Conflicting):
        return Settlement("conflicting", evidence=found.evidence)
    return Settlement(
        "unavailable",
        evidence=f"the lookup returned {type(found).__name__}, not Committed, NotCommitted"
        " or Conflicting",
    )


def reconcile(px: Proctor, call: Call) -> Call:
    """Settle an unknown call before anything else happens to it: the call as it then
    stands (done, or claimed by this caller for the one retry), or ``InDoubt``."""
    from .calls import raise_in_doubt

    state = call.verdict.call
    assert state is not None and call.id is not None
    lookup = call.spec.lookup
    if lookup is None:
        why = "its tool has no lookup to settle it"
        item_id = state.item_id or px.backend.escalate_call(call.id, why)
        raise raise_in_doubt(call, why, item_id)
    token = secrets.token_hex(16)
    found = ask(lookup, call)
    settled = px.backend.settle_call(call.id, replace(found, token=token, owner=call.owner))
    if settled.status in ("done", "claimed"):
        return replace(call, verdict=replace(call.verdict, call=settled), token=token)
    raise raise_in_doubt(call, settled.error or found.answer, settled.item_id)


def reconcile_unknown(px: Proctor, specs: list[ToolSpec], limit: int) -> list[tuple[str, str]]:
    """``px.reconcile()``: each tool with a lookup, asked about its unknown calls."""
    from .calls import Call
    from .gate import Verdict
    from .policy import Decision

    settled: list[tuple[str, str]] = []
    for spec in specs:
        lookup = spec.lookup
        if lookup is None:
            continue
        for found in px.backend.unknown_calls(spec.agent, spec.name, limit):
            state = CallState(found.id, found.key, "unknown")
            decision = Decision("allow", (), "decided before it became unknown", None)
            verdict = Verdict(decision, found.decision_id, found.decision_seq, call=state)
            call = Call(found.agent, found.tool, found.args, found.key, verdict, spec)
            answer = ask(lookup, call)
            px.backend.settle_call(found.id, answer)
            settled.append((found.id, answer.answer))
    return settled


__all__ = ["Committed", "Conflicting", "InDoubt", "NotCommitted", "ask", "reconcile"]
