"""Runtime controls over agents: the kill switch and autonomy-stage overrides.

Stored in ``proctor_controls``, keyed by agent or by ``agent/tool`` (a stage for one tool
of an agent; ``/`` never occurs in a policy's names); every change bumps
``controls_epoch`` on the state row that each decision already reads inside its
transaction, so every process on the database applies a kill from its very next
decision, without polling anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import _clock
from ._errors import Forbidden, InvalidRequest
from .store import Store, WriteTx

ALL = "*"
DETECTOR = "drift:"  # the ``by`` of a change a drift monitor made: it may only lower a stage
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

    def stage_for(self, agent: str, tool: str) -> int | None:
        """The stage in force for one tool of an agent: the lower of the agent's and the
        tool's overrides, or None when neither is set."""
        if not self.stages:
            return None
        found = [s for s in (self.stages.get(agent), self.stages.get(scope(agent, tool))) if s]
        return min(found) if found else None


def scope(agent: str, tool: str | None) -> str:
    """The controls key of an agent, or of one of its tools."""
    return agent if tool is None else f"{agent}/{tool}"


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


def set_stage(
    store: Store,
    agent: str,
    stage: int,
    reason: str,
    by: str | None = None,
    *,
    tool: str | None = None,
) -> None:
    """Set a stage: a person's act. A detector (``by`` starting ``drift:``) may not raise
    one: restoring autonomy takes a human or the promotion gate."""
    if isinstance(stage, bool) or not isinstance(stage, int) or stage not in STAGES:
        raise InvalidRequest(
            f"stage must be 1, 2, 3 or 4 ({', '.join(STAGES.values())}), got {stage!r}"
        )
    if not reason or not reason.strip():
        raise InvalidRequest("a stage change needs a reason (--reason): it is logged")
    key = scope(agent, tool)
    with store.write() as tx:
        if by is not None and by.startswith(DETECTOR):
            row = tx.sql("SELECT stage FROM proctor_controls WHERE agent = ?", (key,)).fetchone()
            if row is None or row[0] is None or stage > int(row[0]):
                raise Forbidden(
                    "a drift monitor may lower autonomy, never restore it: a person"
                    " (proctor agent set-stage) or the promotion gate does"
                )
        _upsert(tx, key, by, stage=stage)
        body: dict[str, object] = {
            "stage": stage,
            "name": STAGES[stage],
            "reason": reason.strip(),
            "by": by,
        }
        if tool is not None:
            body["tool"] = tool
        tx.append("control.stage", body, agent=agent, tool=tool)


def lower_stage(
    tx: WriteTx,
    agent: str,
    tool: str | None,
    target: int,
    by: str,
    evidence: dict[str, object],
) -> tuple[int | None, int] | None:
    """Lower the stage of an agent (or one of its tools) to ``target`` inside ``tx``,
    logged with ``evidence``; (from, to), or None when it is already at or below it.
    ``from`` is None when no override was set (the policy's stage was in force)."""
    key = scope(agent, tool)
    row = tx.sql("SELECT stage FROM proctor_controls WHERE agent = ?", (key,)).fetchone()
    current = None if row is None or row[0] is None else int(row[0])
    if current is not None and current <= target:
        return None
    _upsert(tx, key, by, stage=target)
    body: dict[str, object] = {
        "stage": target,
        "name": STAGES[target],
        "reason": f"drift detected by monitor {by.removeprefix(DETECTOR)}",
        "by": by,
        "evidence": evidence,
    }
    if tool is not None:
        body["tool"] = tool
    tx.append("control.stage", body, agent=agent, tool=tool)
    return current, target
