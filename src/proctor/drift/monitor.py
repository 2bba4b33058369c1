"""Drift monitors over the decision log: read incrementally, state in the store, acted on.

``DriftMonitor.check`` reads the records after each monitor's cursor, feeds its detector
and then, in one write transaction per round, stores the new state, the statistic points
and any detection with its response: a ``drift.detected`` record with the evidence, an
alert (``drift:ID`` in the alerts table, ``alert.firing`` in the log, a message to each
notify target through the outbox) and, when the monitor says so, a lower autonomy stage.
The state row's ``revision`` makes the update conditional: two servers on one database
may both read, only one applies a round, so nothing is alerted twice or lost. Nothing
here runs on a decision's path; the gate only ever reads the stage it leaves behind.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa

from .. import _clock, controls
from .._errors import InvalidRequest, NotFound
from ..policy import CompiledPolicy, compile_policy
from ..policy.lifecycle import active_source
from ..policy.monitors import Monitor
from ..store import Store, WriteTx
from ..store.tables import alerts as alerts_table
from ..store.tables import audit_log
from ..store.tables import drift as drift_table
from ..telemetry.notifications import enqueue
from . import signals
from .engine import Detector, Event, Point, fresh

BATCH = 5000  # records read per query
ROUND = 200_000  # records one round reads at most; the next round goes on from there
ALERT_PREFIX = "drift:"


@dataclass(frozen=True)
class Detection:
    monitor: str
    statistic: float
    threshold: float
    seq: int
    response: dict[str, Any]


def spec_digest(monitor: Monitor) -> str:
    """A monitor's identity: changing what it watches or how starts it afresh."""
    spec = monitor.model_dump(mode="json", exclude={"on_drift", "description"})
    return hashlib.sha256(orjson.dumps(spec, option=orjson.OPT_SORT_KEYS)).hexdigest()


def status_of(state: dict[str, Any], monitor: Monitor) -> str:
    if state.get("drifting"):
        return "drift"
    if monitor.change_point is not None:
        return "watching"
    return "watching" if state["phase"] == "watching" else "reference"


class DriftMonitor:
    """Checks the monitors of whatever policy is active; one per process is enough."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._compiled: tuple[str, CompiledPolicy] | None = None

    def active_policy(self) -> CompiledPolicy | None:
        found = active_source(self.store)
        if found is None:
            return None
        version, text = found
        if self._compiled is None or self._compiled[0] != version:
            self._compiled = (version, compile_policy(text, f"policy {version[:12]}"))
        return self._compiled[1]

    def monitors(self) -> list[Monitor]:
        policy = self.active_policy()
        return list(policy.document.monitors) if policy is not None else []

    # -- one round -----------------------------------------------------------------------

    def check(self, limit: int = ROUND) -> list[Detection]:
        """Consume what was logged since the last round (up to ``limit`` records)."""
        policy = self.active_policy()
        monitors = list(policy.document.monitors) if policy is not None else []
        if not monitors or policy is None:
            query = sa.select(alerts_table.c.id).where(
                alerts_table.c.state == "firing", alerts_table.c.id.startswith(ALERT_PREFIX)
            )
            with self.store.read() as conn:
                firing = conn.execute(query.limit(1)).first()
            if firing:
                with self.store.write() as tx:
                    self._retire(tx, set())
            return []
        rows = self._rows(monitors)
        detectors: dict[str, tuple[Detector, int, int]] = {}
        for m in monitors:
            row = rows[m.id]
            state = orjson.loads(row["state"])
            detectors[m.id] = (Detector(m, state), row["cursor"], row["revision"])
        points: dict[str, list[Point]] = {m.id: [] for m in monitors}
        fed = dict.fromkeys(points, 0)
        start = min(cursor for _, cursor, _ in detectors.values())
        wanted = sorted({k for m in monitors for k in signals.kinds(m)})
        last = start
        for seq, record in self._records(start, wanted, limit):
            last = seq
            for m in monitors:
                detector, cursor, _ = detectors[m.id]
                if seq <= cursor or record["kind"] not in signals.kinds(m):
                    continue
                if not signals.matches(m, record):
                    continue
                raw = signals.value(m, record)
                if raw is None:
                    continue
                value = detector.prepare(raw)
                if value is None:
                    continue
                field = m.change_point or (m.reference.field if m.reference.version else None)
                event = Event(seq, float(record["ts"]), value, signals.version(record, field))
                points[m.id].extend(detector.feed(event))
                fed[m.id] += 1
        found: list[Detection] = []
        targets = dict(policy.document.notify)
        with self.store.write() as tx:
            for m in monitors:
                detector, cursor, revision = detectors[m.id]
                if not fed[m.id]:  # nothing for it: move the cursor, leave the state
                    tx.sql(
                        "UPDATE proctor_drift SET cursor = ?, revision = revision + 1"
                        " WHERE id = ? AND revision = ?",
                        (max(cursor, last), m.id, revision),
                    )
                    continue
                if not self._save(tx, m, detector, max(cursor, last), revision, points[m.id]):
                    continue  # another process applied this round first
                for point in points[m.id]:
                    if point.detected:
                        found.append(self._respond(tx, m, point, policy, targets))
            self._retire(tx, {m.id for m in monitors})
        return found

    @staticmethod
    def _retire(tx: WriteTx, active: set[str]) -> None:
        """Resolve the alert of a monitor the policy no longer has."""
        firing = tx.sql(
            "SELECT id FROM proctor_alerts WHERE state = 'firing' AND id LIKE ?",
            (ALERT_PREFIX + "%",),
        ).fetchall()
        for (alert_id,) in firing:
            if alert_id.removeprefix(ALERT_PREFIX) not in active:
                resolve_alert(
                    tx, alert_id.removeprefix(ALERT_PREFIX), "the monitor left the policy"
                )

    def _rows(self, monitors: list[Monitor]) -> dict[str, dict[str, Any]]:
        """Each monitor's stored row; created (or started afresh when its spec changed)."""
        with self.store.read() as conn:
            rows = {r["id"]: dict(r) for r in conn.execute(sa.select(drift_table)).mappings()}
        stale = [m for m in monitors if m.id not in rows or rows[m.id]["spec"] != spec_digest(m)]
        if stale:
            with self.store.write() as tx:
                for m in stale:  # new, or watching something else now: from the log's start
                    tx.sql("DELETE FROM proctor_drift_points WHERE monitor = ?", (m.id,))
                    self._reset_row(tx, m, cursor=0)
            with self.store.read() as conn:
                rows = {r["id"]: dict(r) for r in conn.execute(sa.select(drift_table)).mappings()}
        return rows

    @staticmethod
    def _reset_row(
        tx: WriteTx, m: Monitor, cursor: int, state: dict[str, Any] | None = None
    ) -> None:
        state = fresh() if state is None else state
        values = (
            spec_digest(m),
            m.agent,
            m.tool,
            status_of(state, m),
            cursor,
            orjson.dumps(state).decode(),
            state.get("threshold"),
            _clock.now(),
        )
        updated = tx.sql(
            "UPDATE proctor_drift SET spec = ?, agent = ?, tool = ?, status = ?, cursor = ?,"
            " state = ?, statistic = NULL, threshold = ?, detected_at = NULL, updated_at = ?,"
            " revision = revision + 1 WHERE id = ?",
            (*values, m.id),
        ).rowcount
        if not updated:
            tx.sql(
                "INSERT INTO proctor_drift (spec, agent, tool, status, cursor, state,"
                " threshold, updated_at, id, revision) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
                (*values, m.id),
            )

    def _records(
        self, after: int, wanted: list[str], limit: int
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        seen = 0
        while seen < limit:
            query = (
                sa.select(audit_log.c.seq, audit_log.c.record)
                .where(audit_log.c.seq > after, audit_log.c.kind.in_(wanted))
                .order_by(audit_log.c.seq)
                .limit(min(BATCH, limit - seen))
            )
            with self.store.read() as conn:
                batch = conn.execute(query).all()
            if not batch:
                return
            for seq, record in batch:
                yield int(seq), orjson.loads(record)
            after = int(batch[-1][0])
            seen += len(batch)

    @staticmethod
    def _save(
        tx: WriteTx,
        m: Monitor,
        detector: Detector,
        cursor: int,
        revision: int,
        points: list[Point],
    ) -> bool:
        st = detector.state
        latest = points[-1] if points else None
        threshold = st.get("threshold")
        if threshold is None and "h" in st:
            threshold = max(st["h"])
        changed = tx.sql(
            "UPDATE proctor_drift SET status = ?, cursor = ?, state = ?, threshold = ?,"
            " updated_at = ?, revision = ?"
            + (", statistic = ?" if latest else "")
            + (", detected_at = ?" if any(p.detected for p in points) else "")
            + " WHERE id = ? AND revision = ?",
            (
                status_of(st, m),
                cursor,
                orjson.dumps(st).decode(),
                threshold if latest is None else latest.threshold,
                _clock.now(),
                revision + 1,
                *((latest.statistic,) if latest else ()),
                *((_clock.now(),) if any(p.detected for p in points) else ()),
                m.id,
                revision,
            ),
        ).rowcount
        if not changed:
            return False
        for p in points:
            tx.sql(
                "INSERT INTO proctor_drift_points (monitor, seq, ts, statistic, threshold, n,"
                " detected) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (m.id, p.seq, p.ts, p.statistic, p.threshold, p.n, p.detected),
            )
        return True

    # -- the response --------------------------------------------------------------------

    def _respond(
        self,
        tx: WriteTx,
        m: Monitor,
        point: Point,
        policy: CompiledPolicy,
        targets: dict[str, list[str]],
    ) -> Detection:
        by = f"{controls.DETECTOR}{m.id}"
        target = self._target_stage(tx, m, policy)
        response: dict[str, Any] = {"alert": ALERT_PREFIX + m.id, "notify": m.on_drift.notify}
        if target is not None:
            response["autonomy"] = {"scope": controls.scope(m.agent, m.tool), **target}
        body = {
            "monitor": m.id,
            "signal": m.signal,
            "signal_kind": m.kind_,
            "test": m.test_,
            "statistic": point.statistic,
            "threshold": point.threshold,
            "false_alarm_rate": m.false_alarm_rate,
            "window": m.window,
            **point.evidence,
            "response": response,
        }
        rec = tx.append("drift.detected", body, agent=m.agent, tool=m.tool)
        if target is not None:
            controls.lower_stage(
                tx,
                m.agent,
                m.tool,
                target["to"],
                by,
                {
                    "drift.detected": rec.id,
                    "seq": rec.seq,
                    "monitor": m.id,
                    "statistic": point.statistic,
                    "threshold": point.threshold,
                },
            )
        self._alert(tx, m, point, targets)
        return Detection(m.id, point.statistic, point.threshold, rec.seq, response)

    @staticmethod
    def _target_stage(tx: WriteTx, m: Monitor, policy: CompiledPolicy) -> dict[str, int] | None:
        """The stage the monitor's response asks for, when it is lower than the one in
        force (an override, else the policy's declared stage)."""
        wanted = m.on_drift.autonomy
        if wanted is None:
            return None
        agent = policy.document.agents.get(m.agent)
        declared = agent.autonomy if agent is not None else 3
        loaded = controls.load(tx)
        in_force = (
            loaded.stage_for(m.agent, m.tool) if m.tool else loaded.stages.get(m.agent)
        ) or declared
        stage = max(1, in_force + wanted) if wanted < 0 else min(wanted, in_force)
        return {"from": in_force, "to": stage} if stage < in_force else None

    @staticmethod
    def _alert(tx: WriteTx, m: Monitor, point: Point, targets: dict[str, list[str]]) -> None:
        alert_id = ALERT_PREFIX + m.id
        now = _clock.now()
        scope = {"agent": m.agent, "tool": m.tool, "queue": None}
        tx.append(
            "alert.firing",
            {
                "alert": alert_id,
                "metric": "drift",
                "value": point.statistic,
                "above": point.threshold,
                "below": None,
                "severity": m.on_drift.severity,
                "scope": scope,
                "notify": m.on_drift.notify,
            },
            agent=m.agent,
            tool=m.tool,
        )
        values = (m.on_drift.severity, point.statistic, point.threshold, now, now)
        updated = tx.sql(
            "UPDATE proctor_alerts SET state = 'firing', metric = 'drift', severity = ?,"
            " value = ?, threshold = ?, since = ?, checked_at = ? WHERE id = ?",
            (*values, alert_id),
        ).rowcount
        if not updated:
            tx.sql(
                "INSERT INTO proctor_alerts (severity, value, threshold, since, checked_at, id,"
                " state, metric) VALUES (?, ?, ?, ?, ?, ?, 'firing', 'drift')",
                (*values, alert_id),
            )
        where = f"{m.agent}/{m.tool}" if m.tool else m.agent
        enqueue(
            tx,
            source=f"alert:{alert_id}",
            names=m.on_drift.notify,
            targets=targets,
            severity=m.on_drift.severity,
            title=f"[{m.on_drift.severity.upper()}] drift on {m.id} ({where})",
            body=(
                (f"{m.description}\n\n" if m.description else "")
                + f"{m.signal}: {m.test_} = {point.statistic:.4g} over threshold"
                f" {point.threshold:.4g} ({point.n} events)"
            ),
        )

    # -- people's acts -------------------------------------------------------------------

    def monitor(self, monitor_id: str) -> Monitor:
        for m in self.monitors():
            if m.id == monitor_id:
                return m
        raise NotFound(f"no monitor {monitor_id!r} in the active policy")

    def reset(self, monitor_id: str, by: str, reason: str) -> None:
        """Accept the current behaviour: a new reference from the next events, the alert
        resolved. The autonomy stage stays where it is: a person restores that apart."""
        if not reason.strip():
            raise InvalidRequest("a reset needs a reason (--reason): it is logged")
        m = self.monitor(monitor_id)
        with self.store.write() as tx:
            self._reset_row(tx, m, cursor=tx.head_seq)
            tx.append(
                "drift.reset",
                {"monitor": m.id, "by": by, "reason": reason.strip()},
                agent=m.agent,
                tool=m.tool,
            )
            resolve_alert(tx, m.id)

    def rebase(self, m: Monitor, state: dict[str, Any], by: str, summary: dict[str, Any]) -> None:
        """Store a calibrated reference (``proctor drift calibrate --apply``)."""
        with self.store.write() as tx:
            row = tx.sql("SELECT cursor FROM proctor_drift WHERE id = ?", (m.id,)).fetchone()
            cursor = int(row[0]) if row is not None and row[0] else tx.head_seq
            self._reset_row(tx, m, cursor=cursor, state=state)
            tx.append("drift.calibrate", {"monitor": m.id, "by": by, **summary}, agent=m.agent)
            resolve_alert(tx, m.id)


def resolve_alert(
    tx: WriteTx, monitor_id: str, reason: str = "the monitor was re-baselined"
) -> None:
    alert_id = ALERT_PREFIX + monitor_id
    row = tx.sql("SELECT state FROM proctor_alerts WHERE id = ?", (alert_id,)).fetchone()
    if row is not None and row[0] == "firing":
        now = _clock.now()
        tx.append("alert.resolved", {"alert": alert_id, "reason": reason})
        tx.sql(
            "UPDATE proctor_alerts SET state = 'ok', since = ?, checked_at = ? WHERE id = ?",
            (now, now, alert_id),
        )
