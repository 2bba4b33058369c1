"""``proctor alerts``, ``problems`` and ``kpi``: what is wrong, who has been told, how the
work goes."""

from __future__ import annotations

import sys
import time

import click
import orjson
from rich.markup import escape
from rich.table import Table

from .._errors import InvalidRequest
from ..sdk import Proctor
from ..telemetry import alerts as alerting
from ..telemetry import notifications
from ..telemetry.problems import rank
from ._common import database_option, out, parse_since, parse_window

_COLOUR = {"critical": "red", "warning": "yellow", "info": "cyan"}


def _ago(ts: float) -> str:
    s = max(0.0, time.time() - ts)
    if s < 120:
        return f"{s:.0f}s ago"
    if s < 7200:
        return f"{s / 60:.0f}m ago"
    return f"{s / 3600:.1f}h ago"


def _json(value: object) -> None:
    click.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


@click.group()
def alerts() -> None:
    """The policy's alerts and the notifications they send."""


@alerts.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@database_option
def list_alerts(as_json: bool, database: str | None) -> None:
    """Every alert's state, firing first, and the notification outbox's counts."""
    with Proctor(database) as px:
        rows = alerting.states(px.store)
        outbox = notifications.recent(px.store, limit=1000)
    if as_json:
        _json({"alerts": rows, "notifications": outbox})
        return
    if not rows:
        out.print("no alerts have been checked yet (the policy's `alerts:`; see docs/policy.md)")
    else:
        table = Table(title="alerts")
        for col in ("alert", "state", "severity", "metric", "value", "threshold", "since"):
            table.add_column(col)
        for r in rows:
            colour = _COLOUR.get(r["severity"], "white") if r["state"] == "firing" else "green"
            table.add_row(
                r["id"],
                f"[{colour}]{r['state']}[/]",
                r["severity"],
                r["metric"],
                "-" if r["value"] is None else f"{r['value']:.4g}",
                f"{r['threshold']:g}",
                _ago(r["since"]),
            )
        out.print(table)
    counts: dict[str, int] = {}
    for n in outbox:
        counts[n["status"]] = counts.get(n["status"], 0) + 1
    if counts:
        out.print("notifications: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
        for n in outbox:
            if n["status"] == "failed" or (n["status"] == "pending" and n["last_error"]):
                label = "[red]failed[/]" if n["status"] == "failed" else "[yellow]retrying[/]"
                out.print(
                    f"  {label} {escape(n['target'])} ({escape(n['url'])}) after"
                    f" {n['failures']} failed attempts: {escape(n['last_error'] or '')}"
                )


@alerts.command("check")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@database_option
def check(as_json: bool, database: str | None) -> None:
    """Check alerts and review SLAs now and send what is due (for embedded deployments
    without a server: run it from cron or a timer)."""
    with Proctor(database) as px:
        swept = px.reviews.sweep()
        changes = alerting.AlertMonitor(px.store).check()
        delivery = notifications.deliver_due(px.store)
    if as_json:
        _json({"swept": swept, "transitions": [vars(c) for c in changes], **delivery.as_dict()})
        return
    for c in changes:
        colour = _COLOUR.get(c.severity, "white") if c.state == "firing" else "green"
        value = "no data" if c.value is None else f"{c.value:.4g}"
        out.print(f"[{colour}]{c.state}[/] {c.alert}: {value} (threshold {c.threshold:g})")
    out.print(
        f"{len(changes)} alert changes; notifications: {delivery.sent} sent,"
        f" {delivery.retrying} to retry, {delivery.failed} failed"
    )


@alerts.command("test")
@click.argument("target")
@database_option
def test(target: str, database: str | None) -> None:
    """Send a test message to every URL of a notify TARGET of the active policy now."""
    with Proctor(database) as px:
        policy = alerting.AlertMonitor(px.store).active_policy()
    targets = dict(policy.document.notify) if policy is not None else {}
    if target not in targets:
        known = ", ".join(sorted(targets)) or "none"
        raise InvalidRequest(f"no notify target '{target}' in the active policy (targets: {known})")
    errors = notifications.send_test(targets[target], target, notifications.send_apprise)
    for url, error in zip(targets[target], errors, strict=True):
        shown = escape(notifications.redact(url))
        if error is None:
            out.print(f"[green]sent[/] {shown}")
        else:
            out.print(f"[red]failed[/] {shown}: {escape(error)}")
    if any(errors):
        sys.exit(1)


@click.command("problems")
@click.option("--window", default="24h", show_default=True, help="How far back to look.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@database_option
def problems(window: str, as_json: bool, database: str | None) -> None:
    """Open problems, most pressing first: failing tools, breaching queues, deny and cost
    spikes, firing alerts, actions in doubt."""
    seconds = parse_window(window, "--window")
    with Proctor(database) as px:
        found = rank(px.store, window=seconds)
    if as_json:
        _json(found)
        return
    if not found:
        out.print(f"no open problems in the last {window}")
        return
    table = Table(title=f"open problems, last {window}")
    for col in ("severity", "problem", "detail", "count", "last seen"):
        table.add_column(col)
    for p in found:
        table.add_row(
            f"[{_COLOUR[p['severity']]}]{p['severity']}[/]",
            p["title"],
            p["detail"],
            str(p["frequency"]),
            _ago(p["last_seen"]),
        )
    out.print(table)


@click.command("kpi")
@click.option("--agent", help="Only this agent.")
@click.option("--tool", help="Only this tool.")
@click.option("--since", help="Only after this (30m, 2h, 7d or an ISO time).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@database_option
def kpi(
    agent: str | None, tool: str | None, since: str | None, as_json: bool, database: str | None
) -> None:
    """Workflow KPIs: completion, latency, retries, failures, escalation, cost, SLA."""
    import orjson

    from ..telemetry.kpi import compute

    with Proctor(database) as px:
        result = compute(px.store, agent=agent, tool=tool, since=parse_since(since))
    if as_json:
        click.echo(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
        return
    table = Table(
        title=f"KPIs{' for ' + agent if agent else ''}{' of ' + tool if tool else ''}"
        f"{' since ' + since if since else ''}"
    )
    table.add_column("kpi")
    table.add_column("value")
    for key, value in result.items():
        if key not in ("agent", "tool", "since"):
            shown = value if isinstance(value, str) else orjson.dumps(value).decode()
            table.add_row(key.replace("_", " "), shown)
    out.print(table)
