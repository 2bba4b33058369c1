"""``proctor breakers``: the circuit breakers every process shares, and closing one by hand."""

from __future__ import annotations

import time

import click
from rich.markup import escape
from rich.table import Table

from .._errors import InvalidRequest
from ..execution import breakers as breaker_store
from ..sdk import Proctor
from ..telemetry.healing import breaker_rows
from ._common import database_option, json_flag, out, print_json

_COLOUR = {"open": "red", "half_open": "yellow", "closed": "green"}


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    ago = max(0.0, time.time() - ts)
    shown = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
    if ago < 120:
        return f"{shown} ({ago:.0f}s ago)"
    return f"{shown} ({ago / 60:.0f}m ago)" if ago < 7200 else f"{shown} ({ago / 3600:.1f}h ago)"


@click.group("breakers", invoke_without_command=True)
@json_flag
@database_option
@click.pass_context
def breakers(ctx: click.Context, as_json: bool, database: str | None) -> None:
    """Circuit breakers: list them (the default) or reset one."""
    ctx.obj = database  # ``proctor breakers -d URL reset ...`` means that database too
    if ctx.invoked_subcommand is None:
        _list(as_json, database)


@breakers.command("list")
@json_flag
@database_option
@click.pass_context
def list_breakers(ctx: click.Context, as_json: bool, database: str | None) -> None:
    """Every breaker, open first: state, recent calls and failures, when it opened."""
    _list(as_json, database or ctx.obj)


def _list(as_json: bool, database: str | None) -> None:
    with Proctor(database) as px:
        rows = breaker_rows(px.store)
    if as_json:
        print_json(rows)
        return
    if not rows:
        out.print("no circuit breakers yet (a tool's `breaker:` in the policy's `tools:`)")
        return
    table = Table(title="circuit breakers")
    for col in (
        "scope",
        "agent",
        "tool",
        "state",
        "calls",
        "failures",
        "failure rate",
        "opened at",
        "trials",
    ):
        table.add_column(col)
    for r in rows:
        rate = r["failure_rate"]
        table.add_row(
            escape(r["scope"]),
            escape(r["agent"]),
            escape(r["tool"]),
            f"[{_COLOUR.get(r['state'], 'white')}]{r['state'].replace('_', ' ')}[/]",
            str(r["calls"]),
            str(r["failures"]),
            "-" if rate is None else f"{rate:.0%}",
            _when(r["opened_at"]) if r["state"] != "closed" else "-",
            f"{r['trials']} ({r['trial_failures']} failed)" if r["state"] == "half_open" else "-",
        )
    out.print(table)


@breakers.command("reset")
@click.argument("scope")
@click.option("--by", required=True, help="Who closes it (recorded in the log).")
@database_option
@click.pass_context
def reset(ctx: click.Context, scope: str, by: str, database: str | None) -> None:
    """Close the breaker SCOPE (``agent/tool`` or ``*/tool``) now: calls go through again.
    Logged as ``breaker.closed`` with who did it."""
    if not by.strip():
        raise InvalidRequest("--by names who resets the breaker")
    with Proctor(database or ctx.obj) as px:
        try:
            with px.store.write() as tx:
                breaker_store.reset(tx, scope, by.strip())
        except LookupError:
            known = ", ".join(sorted(r["scope"] for r in breaker_rows(px.store))) or "none yet"
            raise InvalidRequest(f"no circuit breaker {scope!r} (breakers: {known})") from None
    out.print(f"closed the circuit breaker {escape(scope)} (by {escape(by.strip())})")
