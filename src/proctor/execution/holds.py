"""Holds: while an approval is pending in a run, or in any run it descends from, the run's
other calls may be decided (and a gated one gets its review item at once) but none runs;
a rejection whose rule refuses dependents refuses them with its reason.

Dependents are the work that waited on the rejected item: calls it held, and approved
items opened before it was rejected. A call the agent makes after it learned of the
rejection is its own new decision (telling the customer, trying another way) and is not
refused for it.

Decided inside the deciding (or claiming) transaction, against the items the database
holds, so a hold holds across threads, processes and servers. A run records its parent
when it starts, so a run started elsewhere with ``parent=`` finds its ancestors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .. import _clock
from ..store import WriteTx

MAX_DEPTH = 32  # runs nested deeper than this are refused as runaway delegation
REFUSE = "refuse_dependents"


@dataclass(frozen=True, slots=True)
class Hold:
    pending: tuple[str, ...] = ()  # items that hold the run until someone decides them
    refused_by: str | None = None  # a rejected item that refuses the run's work
    reason: str | None = None  # that rejection's reason


def check(
    tx: WriteTx,
    run_ids: Sequence[str],
    *,
    exclude: str | None = None,
    waited_on: Sequence[str] = (),
    opened_at: float | None = None,
) -> Hold | None:
    """What holds the runs ``run_ids`` (a run and its ancestors), if anything. A rejection
    refuses only a dependent: a call that waited on it (``waited_on``), or an item opened
    before it was rejected (``opened_at``)."""
    if not run_ids:
        return None
    marks = ", ".join("?" for _ in run_ids)
    rows = tx.sql(
        "SELECT id, status, note, decided_at FROM proctor_review_items"
        f" WHERE run_id IN ({marks}) AND ((status = 'pending' AND hold_run = ?)"
        " OR (status = 'rejected' AND on_reject = ?))"
        " ORDER BY created_at LIMIT 50",
        (*run_ids, True, REFUSE),
    ).fetchall()
    pending = tuple(r[0] for r in rows if r[1] == "pending" and r[0] != exclude)
    rejected = [
        r
        for r in rows
        if r[1] == "rejected"
        and r[0] != exclude
        and (r[0] in waited_on or (opened_at is not None and (r[3] or 0.0) >= opened_at))
    ]
    if rejected:
        return Hold(pending, rejected[0][0], rejected[0][2] or "a reviewer rejected it")
    return Hold(pending) if pending else None


def record_run(tx: WriteTx, run_id: str, parent_id: str | None, agent: str) -> None:
    """A run's first action: remember its parent, for holds across processes."""
    tx.sql(
        "INSERT INTO proctor_runs (id, parent_id, agent, started_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (id) DO NOTHING",
        (run_id, parent_id, agent, _clock.now()),
    )


def lineage(tx: WriteTx, run_id: str | None) -> list[str]:
    """``run_id`` and the runs it descends from, nearest first, as recorded."""
    found: list[str] = []
    while run_id is not None and run_id not in found and len(found) < MAX_DEPTH:
        found.append(run_id)
        row = tx.sql("SELECT parent_id FROM proctor_runs WHERE id = ?", (run_id,)).fetchone()
        run_id = row[0] if row is not None else None
    return found
