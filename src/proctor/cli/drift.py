"""``proctor drift check|status|history|calibrate|reset``: drift monitors without a server.

``check`` is what the server's loop does every ``PROCTOR_DRIFT_CHECK_SECONDS``; an
embedded deployment runs it from cron or a timer.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import click
from rich.markup import escape
from rich.table import Table

from .._errors import InvalidRequest
from .._extras import missing
from ..sdk import Proctor
from ._common import database_option, json_flag, out, parse_since, print_json

try:  # the drift extra (numpy): one line naming it when it is missing
    from ..drift.fit import fit
    from ..drift.monitor import DriftMonitor
    from ..drift.views import history as drift_history
    from ..drift.views import status as drift_status
except ImportError as exc:
    raise missing("drift", exc) from None


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


@click.group()
def drift() -> None:
    """Drift monitors: check them, see them, calibrate and re-baseline them."""


@drift.command("check")
@json_flag
@database_option
def check(as_json: bool, database: str | None) -> None:
    """Read what was logged since the last check, detect, and respond (alert, stage)."""
    with Proctor(database) as px:
        found = DriftMonitor(px.store).check()
    if as_json:
        print_json({"detections": [vars(x) for x in found]})
        return
    for x in found:
        stage = x.response.get("autonomy")
        lowered = f"; {stage['scope']} lowered {stage['from']} -> {stage['to']}" if stage else ""
        out.print(
            f"[red]drift[/] {escape(x.monitor)}: {x.statistic:.4g} over {x.threshold:.4g}"
            f"{escape(lowered)}"
        )
    out.print(f"{len(found)} detection{'' if len(found) == 1 else 's'}")


@drift.command("status")
@json_flag
@database_option
def status(as_json: bool, database: str | None) -> None:
    """Each monitor of the active policy: state, last statistic, threshold."""
    with Proctor(database) as px:
        rows = drift_status(px.store, DriftMonitor(px.store).monitors())
    if as_json:
        print_json(rows)
        return
    if not rows:
        out.print(
            "the active policy has no monitors (the policy's `monitors:`; see docs/policy.md)"
        )
        return
    table = Table(title="drift monitors")
    for col in ("monitor", "scope", "signal", "test", "state", "statistic", "threshold", "since"):
        table.add_column(col)
    colour = {"drift": "red", "watching": "green"}
    for r in rows:
        scope = r["agent"] + (f"/{r['tool']}" if r["tool"] else "")
        table.add_row(
            r["id"],
            scope,
            r["signal"] + (f" @ {r['change_point']}" if r["change_point"] else ""),
            r["test"],
            f"[{colour.get(r['status'], 'yellow')}]{r['status']}[/]",
            _num(r["statistic"]),
            _num(r["threshold"]),
            _when(r["detected_at"]),
        )
    out.print(table)


@drift.command("history")
@click.option("--monitor", default=None, help="Only this monitor.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10000))
@json_flag
@database_option
def history(monitor: str | None, limit: int, as_json: bool, database: str | None) -> None:
    """Detections with their evidence and response, and re-baselines, newest first."""
    with Proctor(database) as px:
        rows = drift_history(px.store, monitor, limit)
    if as_json:
        print_json(rows)
        return
    if not rows:
        out.print("no detections")
    for r in rows:
        if r["kind"] != "drift.detected":
            out.print(f"{r['time']}  {r['kind']} {escape(r['monitor'])} by {escape(r['by'])}")
            continue
        stage = r["response"].get("autonomy")
        lowered = f", {stage['scope']} stage {stage['from']} -> {stage['to']}" if stage else ""
        out.print(
            f"{r['time']}  [red]drift[/] {escape(r['monitor'])}: {r['test']}"
            f" {r['statistic']:.4g} > {r['threshold']:.4g}{escape(lowered)}"
        )


@drift.command("calibrate")
@click.argument("monitor")
@click.option("--since", required=True, help="Start of a normal period: 7d (ago) or ISO.")
@click.option("--until", default=None, help="End of it (default: now).")
@click.option("--apply", "apply_", is_flag=True, help="Store it as the monitor's reference.")
@json_flag
@database_option
def calibrate(
    monitor: str,
    since: str,
    until: str | None,
    apply_: bool,
    as_json: bool,
    database: str | None,
) -> None:
    """Fit MONITOR's reference and threshold on a period that was normal; report the
    expected false-alarm rate (and, with --apply, use them from now on)."""
    start = parse_since(since)
    end = parse_since(until) if until else time.time()
    assert start is not None and end is not None
    if end <= start:
        raise InvalidRequest("--until is not after --since")
    with Proctor(database) as px:
        watcher = DriftMonitor(px.store)
        m = watcher.monitor(monitor)
        state, report = fit(px.store, m, start, end)
        if apply_:
            watcher.rebase(m, state, "cli", report)
    report["applied"] = apply_
    if as_json:
        print_json(report)
        return
    thr = report.get("threshold", report.get("thresholds"))
    out.print(
        f"{monitor}: {report['events']} events, {report['test']} threshold {thr}\n"
        f"false alarms per 10,000 events: expected {report['expected_false_alarms_per_10000']}"
        f" (stated rate {report['false_alarm_rate']}), measured on the period"
        f" {report['measured_false_alarms_per_10000']}"
        + ("\napplied: the monitor watches against this reference now" if apply_ else "")
    )


@drift.command("reset")
@click.argument("monitor")
@click.option("--reason", required=True)
@database_option
def reset(monitor: str, reason: str, database: str | None) -> None:
    """Accept MONITOR's new behaviour as normal: a new reference from the next events and
    the alert resolved. The autonomy stage is restored apart: proctor agent set-stage."""
    with Proctor(database) as px:
        DriftMonitor(px.store).reset(monitor, "cli", reason)
    out.print(f"{monitor}: re-baselining from the next events")
