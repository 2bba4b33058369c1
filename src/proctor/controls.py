"""Runtime controls over agents: the kill switch and autonomy-stage overrides.

Stored in ``proctor_controls``; every change bumps ``controls_epoch`` on the state row that
each decision already reads inside its transaction, so every process on the database
applies a kill from its very next decision, without polling anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import _clock
from ._errors import InvalidRequest
from .store import Store, WriteTx

ALL = "*"
STAGES = {1: "assisted", 2: "guided", 3: "controlled autonomy", 4: "strategic autonomy"}


@dataclass(frozen=True)
class Controls:
    killed: dict[str, str] = field(default_factory=dict)  # agent (or "*") -> reason
    stages: dict[str, int] = field(default_factory=dict)

    def kill_reason(self, agent: str) -> str | None:
        reason = self.killed.get(agent)
        if reason is None:
            reason = self.killed.get(ALL)
        return reason


def load(tx: WriteTx) -> Controls:
    killed: dict[str, str] = {}
    stages: dict[str, int] = {}
    for agent, is_killed, reason, stage in tx.sql(
        "SELECT agent, killed, reason, stage FROM proctor_controls"
    ).fetchall():
        if is_killed:
            killed[agent] = reason or "no reason given"
        if stage is not None:
            stages[agent] = int(stage)
    return Controls(killed, stages)


def _upsert(tx: WriteTx, agent: str, by: str | None, **fields: object) -> None:
    exists = tx.sql("SELECT 1 FROM proctor_controls WHERE agent = ?", (agent,)).fetchone()
    now = _clock.now()
    if exists:
        cols = ", ".join(f"{k} = ?" for k in fields)
        tx.sql(
            f"UPDATE proctor_controls SET {cols}, updated_at = ?, updated_by = ? WHERE agent = ?",
            (*fields.values(), now, by, agent),
        )
    else:
        row = {"killed": False, "reason": None, "stage": None, **fields}
        tx.sql(
            "INSERT INTO proctor_controls (agent, killed, reason, stage, updated_at, updated_by)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (agent, row["killed"], row["reason"], row["stage"], now, by),
        )
    tx.bump_controls()


def kill(store: Store, agent: str | None, reason: str, by: str | None = None) -> None:
    """Stop an agent (or every agent): each decision is deny, pending grants are frozen."""
    if not reason or not reason.strip():
        raise InvalidRequest("a kill needs a reason (--reason): it is logged and shown")
    target = agent or ALL
    with store.write() as tx:
        _upsert(tx, target, by, killed=True, reason=reason.strip())
        tx.append(
            "control.kill", {"target": target, "reason": reason.strip(), "by": by}, agent=agent
        )


def revive(store: Store, agent: str | None, by: str | None = None) -> None:
    target = agent or ALL
    with store.write() as tx:
        row = tx.sql("SELECT killed FROM proctor_controls WHERE agent = ?", (target,)).fetchone()
        if row is None or not row[0]:
            raise InvalidRequest(f"{'every agent' if target == ALL else target!r} is not stopped")
        _upsert(tx, target, by, killed=False, reason=None)
        tx.append("control.revive", {"target": target, "by": by}, agent=agent)


def set_stage(store: Store, agent: str, stage: int, reason: str, by: str | None = None) -> None:
    if isinstance(stage, bool) or not isinstance(stage, int) or stage not in STAGES:
        raise InvalidRequest(
            f"stage must be 1, 2, 3 or 4 ({', '.join(STAGES.values())}), got {stage!r}"
        )
    if not reason or not reason.strip():
        raise InvalidRequest("a stage change needs a reason (--reason): it is logged")
    with store.write() as tx:
        _upsert(tx, agent, by, stage=stage)
        tx.append(
            "control.stage",
            {"stage": stage, "name": STAGES[stage], "reason": reason.strip(), "by": by},
            agent=agent,
        )
