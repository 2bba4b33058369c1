"""Circuit breakers kept in the store, so every process and every server sees one state.

A breaker covers an agent and a tool (or a tool for every agent) and counts the last
``window`` calls as a string of ``0`` (ok) and ``1`` (failed). When at least ``min_calls``
are counted and the failed share reaches ``failure_rate`` it opens: calls are refused at
once for ``open_for`` seconds, then ``trial_calls`` calls are let through (half open); their
failure rate closes it again or re-opens it.

Every write transaction holds the chain head, so breaker updates are serialised with the
decisions that read them. A change of state bumps the controls epoch: each process reloads
the states at its next decision, which is how a breaker opened in one process refuses in
another within one decision, while the allow path of a closed breaker reads nothing.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from .. import _clock
from ..policy.schema import Breaker
from ..store import WriteTx

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


def rule_id(tool: str) -> str:
    """The rule id an open breaker's refusals carry."""
    return f"breaker.{tool}"


def scope_of(agent: str, tool: str, settings: Breaker) -> str:
    return f"{agent}/{tool}" if settings.scope == "agent_tool" else f"*/{tool}"


@dataclass(frozen=True, slots=True)
class BreakerState:
    scope: str
    agent: str
    tool: str
    state: str
    outcomes: str
    opened_at: float | None
    trials: int
    trial_failures: int
    trial_done: int
    escalated_at: float | None
    updated_at: float

    @property
    def failure_rate(self) -> float | None:
        if not self.outcomes:
            return None
        return self.outcomes.count("1") / len(self.outcomes)

    def as_dict(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "agent": self.agent,
            "tool": self.tool,
            "state": self.state,
            "calls": len(self.outcomes),
            "failures": self.outcomes.count("1"),
            "failure_rate": self.failure_rate,
            "opened_at": self.opened_at,
            "trials": self.trials,
            "trial_failures": self.trial_failures,
            "escalated_at": self.escalated_at,
            "updated_at": self.updated_at,
        }


_COLUMNS = (
    "scope, agent, tool, state, outcomes, opened_at, trials, trial_failures, trial_done,"
    " escalated_at, updated_at"
)


def _row(row: Any) -> BreakerState:
    return BreakerState(*row)


def load(tx: WriteTx | Any) -> dict[str, BreakerState]:
    return {r[0]: _row(r) for r in tx.sql(f"SELECT {_COLUMNS} FROM proctor_breakers").fetchall()}


class Breakers:
    """Breaker states of one process, reloaded when the controls epoch moves."""

    def __init__(self) -> None:
        self._cached: tuple[int, dict[str, BreakerState]] | None = None
        self._lock = threading.Lock()

    def states(self, tx: WriteTx) -> dict[str, BreakerState]:
        cached = self._cached
        if cached is None or cached[0] != tx.controls_epoch:
            with self._lock:
                cached = self._cached = (tx.controls_epoch, load(tx))
        return cached[1]

    def admit(self, tx: WriteTx, agent: str, tool: str, settings: Breaker) -> str | None:
        """None when a call may go ahead; otherwise why it is refused."""
        scope = scope_of(agent, tool, settings)
        found = self.states(tx).get(scope)
        if found is None or found.state == CLOSED:
            return None
        now = _clock.now()
        current = _fresh(tx, scope) or found
        if current.state == OPEN:
            opened = current.opened_at or now
            if now - opened < settings.open_for:
                left = settings.open_for - (now - opened)
                return (
                    f"the circuit breaker for {tool} ({scope}) is open after"
                    f" {_rate(current)} of recent calls failed; it lets trial calls through"
                    f" in {left:.0f}s"
                )
            _move(tx, current, HALF_OPEN, "open_for elapsed", trials=1)
            return None
        if current.state == HALF_OPEN:
            if current.trials >= settings.trial_calls:
                return (
                    f"the circuit breaker for {tool} ({scope}) is half open and its"
                    f" {settings.trial_calls} trial calls are under way"
                )
            tx.sql(
                "UPDATE proctor_breakers SET trials = trials + 1, updated_at = ? WHERE scope = ?",
                (now, scope),
            )
        return None

    def record(self, tx: WriteTx, agent: str, tool: str, settings: Breaker, failed: bool) -> str:
        """Count one call's outcome; returns the breaker's state after it.

        A closed breaker whose window is full of successes stays exactly as it is after one
        more success, so that case writes nothing and reads only this process's cache (every
        process reloads it when a window turns from clean to failing and back: those
        changes bump the controls epoch). The allow path of a healthy tool pays nothing.
        """
        scope = scope_of(agent, tool, settings)
        if not failed:
            cached = self.states(tx).get(scope)
            if cached is not None and _clean(cached, settings):
                return CLOSED
        current = _fresh(tx, scope)
        now = _clock.now()
        if current is None:
            tx.sql(
                f"INSERT INTO proctor_breakers ({_COLUMNS})"
                " VALUES (?, ?, ?, 'closed', '', NULL, 0, 0, 0, NULL, ?)",
                (scope, agent if settings.scope == "agent_tool" else "*", tool, now),
            )
            current = _fresh(tx, scope)
            assert current is not None
        if current.state == OPEN:
            return OPEN  # a call admitted before it opened: its window starts over anyway
        if current.state == HALF_OPEN:
            done = current.trial_done + 1
            failures = current.trial_failures + int(failed)
            if failures / settings.trial_calls >= settings.failure_rate:
                _move(tx, current, OPEN, f"{failures} of {done} trial calls failed")
                return OPEN
            if done >= settings.trial_calls:
                _move(tx, current, CLOSED, f"{failures} of {done} trial calls failed")
                return CLOSED
            tx.sql(
                "UPDATE proctor_breakers SET trial_done = ?, trial_failures = ?, updated_at = ?"
                " WHERE scope = ?",
                (done, failures, now, scope),
            )
            return HALF_OPEN
        outcomes = (current.outcomes + ("1" if failed else "0"))[-settings.window :]
        failures = outcomes.count("1")
        if len(outcomes) >= settings.min_calls and failures / len(outcomes) >= (
            settings.failure_rate
        ):
            _move(
                tx,
                current,
                OPEN,
                f"{failures} of the last {len(outcomes)} calls failed",
                outcomes=outcomes,
            )
            return OPEN
        tx.sql(
            "UPDATE proctor_breakers SET outcomes = ?, updated_at = ? WHERE scope = ?",
            (outcomes, now, scope),
        )
        if _clean(current, settings) != (len(outcomes) >= settings.window and "1" not in outcomes):
            tx.bump_controls()  # every process re-reads whether successes need counting
        return CLOSED


def _clean(state: BreakerState, settings: Breaker) -> bool:
    """Closed with a window full of successes: one more success changes nothing."""
    outcomes = state.outcomes
    return state.state == CLOSED and len(outcomes) >= settings.window and "1" not in outcomes


def _fresh(tx: WriteTx, scope: str) -> BreakerState | None:
    row = tx.sql(f"SELECT {_COLUMNS} FROM proctor_breakers WHERE scope = ?", (scope,)).fetchone()
    return _row(row) if row is not None else None


def _rate(state: BreakerState) -> str:
    rate = state.failure_rate
    return "a high share" if rate is None else f"{rate:.0%}"


def _move(
    tx: WriteTx,
    current: BreakerState,
    to: str,
    why: str,
    *,
    trials: int = 0,
    outcomes: str | None = None,
    by: str | None = None,
) -> None:
    """A change of state: stored, logged (``breaker.<state>``) and seen by every process."""
    now = _clock.now()
    tx.sql(
        "UPDATE proctor_breakers SET state = ?, outcomes = ?, opened_at = ?, trials = ?,"
        " trial_failures = 0, trial_done = 0, escalated_at = ?, updated_at = ? WHERE scope = ?",
        (
            to,
            "" if to != OPEN or outcomes is None else outcomes,
            now if to == OPEN else current.opened_at if to == HALF_OPEN else None,
            trials,
            current.escalated_at if to != CLOSED else None,
            now,
            current.scope,
        ),
    )
    body: dict[str, Any] = {
        "scope": current.scope,
        "from": current.state,
        "to": to,
        "why": why,
    }
    if outcomes:
        body["failures"] = outcomes.count("1")
        body["calls"] = len(outcomes)
    if by is not None:
        body["by"] = by
    tx.append(
        f"breaker.{to}",
        body,
        agent=None if current.agent == "*" else current.agent,
        tool=current.tool,
    )
    tx.bump_controls()


def reset(tx: WriteTx, scope: str, by: str) -> BreakerState:
    """Close a breaker by hand (an admin's act, logged); LookupError for an unknown scope."""
    current = _fresh(tx, scope)
    if current is None:
        raise LookupError(scope)
    _move(tx, current, CLOSED, "reset by hand", by=by)
    found = _fresh(tx, scope)
    assert found is not None
    return found


def overdue(tx: WriteTx, older_than: dict[str, float]) -> list[BreakerState]:
    """Open breakers, not yet escalated, open longer than their tool's bound."""
    now = _clock.now()
    return [
        b
        for b in load(tx).values()
        if b.state == OPEN
        and b.escalated_at is None
        and b.tool in older_than
        and b.opened_at is not None
        and now - b.opened_at >= older_than[b.tool]
    ]


def mark_escalated(tx: WriteTx, scope: str) -> None:
    tx.sql("UPDATE proctor_breakers SET escalated_at = ? WHERE scope = ?", (_clock.now(), scope))
