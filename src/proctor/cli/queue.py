"""``proctor queue``: work the review queues from a terminal."""

from __future__ import annotations

import time
from typing import Any

import click
import orjson
from rich.table import Table

from .._errors import InvalidRequest
from ..review import ReviewItem
from ..sdk import Proctor
from ._common import database_option, out, risk_text


def _ago(ts: float | None, now: float) -> str:
    if ts is None:
        return "-"
    delta = ts - now
    sign = "" if delta >= 0 else "-"
    delta = abs(delta)
    if delta < 90:
        return f"{sign}{delta:.0f}s"
    if delta < 5400:
        return f"{sign}{delta / 60:.0f}m"
    return f"{sign}{delta / 3600:.1f}h"


def _short(value: Any, width: int = 48) -> str:
    text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    return text if len(text) <= width else text[: width - 1] + "…"


def _probability(p: float | None) -> str:
    """As the console shows it: a whole percentage."""
    return "-" if p is None else f"{p * 100:.0f}%"


@click.group("queue")
def queue() -> None:
    """List, inspect and decide review items."""


@queue.command("list")
@database_option
@click.option("--queue", "queue_name", help="Only this queue.")
@click.option(
    "--status",
    default="pending",
    show_default=True,
    help="pending, approved, rejected, expired, executing, done, failed, in_doubt or all.",
)
def queue_list(database: str | None, queue_name: str | None, status: str) -> None:
    """Items as a table, most severe first."""
    with Proctor(database) as px:
        items = px.reviews.list(status=None if status == "all" else status, queue=queue_name)
    now = time.time()
    table = Table(
        title=f"{len(items)} {status} item(s)" + (f" in {queue_name}" if queue_name else "")
    )
    for col in ("id", "sev", "queue", "kind", "agent", "tool", "arguments", "risk", "sla", "age"):
        table.add_column(col, no_wrap=col in ("id", "queue"))
    for item in items:
        table.add_row(
            item.id,
            f"{item.severity(now):.2f}",
            item.queue,
            item.kind,
            item.agent,
            item.tool,
            _short(item.args),
            risk_text(item.risk),
            _ago(item.sla_due, now),
            _ago(item.created_at, now).lstrip("-"),
        )
    out.print(table)


def _show(item: ReviewItem) -> None:
    now = time.time()
    out.print(
        f"[bold]{item.kind} {item.id}[/bold]  {item.status} in queue {item.queue}"
        f"  severity {item.severity(now):.2f}"
    )
    out.print(f"  {item.agent} wants to call [bold]{item.tool}[/bold]")
    out.print(f"  arguments: {_short(item.args, 400)}")
    if item.edited_args:
        for name, (before, after) in item.diff().items():
            out.print(f"  edited {name}: {before!r} -> {after!r}")
    out.print(
        f"  why here:  {item.reason} (rules {', '.join(item.rule_ids)};"
        f" policy {str(item.policy_version)[:12]})"
    )
    out.print(
        f"  risk: {risk_text(item.risk)}   SLA due in: {_ago(item.sla_due, now)}"
        f"   expires in: {_ago(item.expires_at, now)}   quorum: {item.quorum}"
    )
    if item.context:
        out.print(f"  context: {_short(item.context, 400)}")
    if item.detail:
        out.print(f"  error: {item.detail}")
    for n, option in enumerate(item.options or []):
        out.print(
            f"  option {n}: {option['tool']} {_short(option['args'])}"
            f"  p={_probability(option.get('probability'))}  risks={option.get('risks')}"
        )
    if item.history:
        out.print("  the run so far:")
        for step in item.history:
            out.print(f"    {step['tool']:<18} {step['what']}")
    if item.decided_by:
        out.print(f"  decided by {item.decided_by}" + (f": {item.note}" if item.note else ""))
    if item.result is not None or item.result_error:
        out.print(f"  outcome: {item.result_error or _short(item.result, 200)}")
    actions = item.next_actions()
    out.print(f"  next: {', '.join(actions) if actions else 'nothing (decided)'}")


@queue.command("show")
@click.argument("item_id")
@database_option
def queue_show(item_id: str, database: str | None) -> None:
    """Everything a reviewer needs to decide one item."""
    with Proctor(database) as px:
        _show(px.reviews.get(item_id))


by_option = click.option("--by", required=True, help="Your name, as recorded in the log.")


@queue.command("approve")
@click.argument("item_id")
@by_option
@click.option("--note")
@click.option(
    "--confirm-not-run",
    is_flag=True,
    help="For an item in doubt: you checked that its first run did not happen, so it may"
    " run again. Recorded in the log.",
)
@database_option
def queue_approve(
    item_id: str, by: str, note: str | None, confirm_not_run: bool, database: str | None
) -> None:
    """Approve an item (one vote toward its queue's quorum)."""
    with Proctor(database) as px:
        item = px.reviews.approve(item_id, by=by, note=note, confirm_not_run=confirm_not_run)
    out.print(f"{item.id}: {item.status}")


@queue.command("settle")
@click.argument("item_id")
@by_option
@click.option(
    "--happened/--did-not-happen",
    required=True,
    help="Whether the call's effect happened (checked in the system it acts on).",
)
@click.option("--note")
@database_option
def queue_settle(
    item_id: str, by: str, happened: bool, note: str | None, database: str | None
) -> None:
    """Settle a call that may or may not have happened: it did (the call is closed), or it
    did not (its next repeat runs it, once)."""
    with Proctor(database) as px:
        item = px.reviews.settle(item_id, by=by, happened=happened, note=note)
    out.print(f"{item.id}: settled ({'it happened' if happened else 'it did not happen'})")


@queue.command("reject")
@click.argument("item_id")
@by_option
@click.option("--reason", required=True, help="The agent receives it.")
@database_option
def queue_reject(item_id: str, by: str, reason: str, database: str | None) -> None:
    """Reject an item with a reason."""
    with Proctor(database) as px:
        item = px.reviews.reject(item_id, by=by, reason=reason)
    out.print(f"{item.id}: {item.status}")


def _parse_sets(pairs: tuple[str, ...]) -> dict[str, Any]:
    edits: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise InvalidRequest(f"--set takes NAME=VALUE, got {pair!r}")
        try:
            edits[name] = orjson.loads(raw)
        except orjson.JSONDecodeError:
            edits[name] = raw  # a bare word is a string
    return edits


@queue.command("edit")
@click.argument("item_id")
@by_option
@click.option(
    "--set",
    "sets",
    multiple=True,
    required=True,
    metavar="NAME=VALUE",
    help='A changed argument; VALUE is JSON (250.0, true, "text") or a bare word.',
)
@click.option("--note")
@database_option
def queue_edit(
    item_id: str, by: str, sets: tuple[str, ...], note: str | None, database: str | None
) -> None:
    """Approve with changed arguments (checked against the tool and the policy)."""
    with Proctor(database) as px:
        before = px.reviews.get(item_id)
        item = px.reviews.edit(item_id, by=by, args=_parse_sets(sets), note=note)
    for name, (old, new) in item.diff().items():
        out.print(f"{name}: {old!r} -> {new!r}")
    if item.status == "pending" and (item.queue, item.rule_ids) != (before.queue, before.rule_ids):
        out.print(
            f"{item.id}: the edited action needs a decision in queue '{item.queue}'"
            f" ({item.reason}); it moved there and your approval was not counted"
        )
        return
    out.print(f"{item.id}: {item.status}")


@queue.command("escalate")
@click.argument("item_id")
@by_option
@click.option("--to", "to", required=True, help="The queue to send it to.")
@click.option("--note")
@database_option
def queue_escalate(item_id: str, by: str, to: str, note: str | None, database: str | None) -> None:
    """Move an item to another queue."""
    with Proctor(database) as px:
        item = px.reviews.escalate(item_id, by=by, to=to, note=note)
    out.print(f"{item.id}: now in {item.queue}")


@queue.command("choose")
@click.argument("item_id")
@by_option
@click.option("--option", type=int, required=True, help="The option's number (from 0).")
@click.option("--note")
@database_option
def queue_choose(
    item_id: str, by: str, option: int, note: str | None, database: str | None
) -> None:
    """Pick one option of a choice item."""
    with Proctor(database) as px:
        item = px.reviews.choose(item_id, by=by, option=option, note=note)
    out.print(f"{item.id}: {item.status} (option {item.chosen})")


@queue.command("sweep")
@database_option
def queue_sweep(database: str | None) -> None:
    """Apply review timeouts and flag actions whose runner died (in_doubt)."""
    with Proctor(database) as px:
        changed = px.reviews.sweep()
    out.print(f"{len(changed)} item(s) changed")
