"""``proctor audit``: verify, export and replay the decision log."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from ..policy import lifecycle as lc
from ..sdk import Proctor
from ._common import database_option, err, out


@click.group()
def audit() -> None:
    """Verify and export the decision log."""


@audit.command("verify")
@database_option
def audit_verify(database: str | None) -> None:
    """Check every record's link and the chain head; exit 1 naming the first bad record."""
    from ..audit.verify import verify

    with Proctor(database) as px:
        result = verify(px.store)
    if not result.ok:
        err.print(result.message(), markup=False)
        sys.exit(1)
    out.print(result.message())


@audit.command("export")
@database_option
@click.option("--format", "fmt", type=click.Choice(["jsonl"]), default="jsonl", show_default=True)
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path, dir_okay=False),
    help="File to write (default: standard output).",
)
@click.option("--since", type=click.IntRange(min=0), default=0, help="Only records after this seq.")
def audit_export(database: str | None, fmt: str, output: Path | None, since: int) -> None:
    """Write the decision log, one JSON record per line."""
    from ..audit.export import export_jsonl

    with Proctor(database) as px:
        if output is None:
            n = export_jsonl(px.store, sys.stdout, since)
        else:
            with output.open("w", encoding="utf-8") as fh:
                n = export_jsonl(px.store, fh, since)
    err.print(f"exported {n} records")


@audit.command("replay")
@click.argument("seq", type=int)
@database_option
def audit_replay(seq: int, database: str | None) -> None:
    """Re-evaluate one recorded decision under the version that made it."""
    with Proctor(database) as px:
        result = lc.replay_one(px.store, seq)
    if not result.same:
        out.print(result.message)
        sys.exit(1)
    out.print(result.message)


@audit.command("show")
@click.argument("call_id")
@database_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def audit_show(call_id: str, database: str | None, as_json: bool) -> None:
    """A call's receipt: where it stands and every record of its life, with their seqs.

    CALL_ID is a call's id (a call with an identity) or its decision record's id."""
    import orjson
    from rich.markup import escape
    from rich.table import Table

    from ..audit.receipts import receipt, summary

    with Proctor(database) as px:
        life = receipt(px.store, call_id)
    if as_json:
        click.echo(orjson.dumps(life, option=orjson.OPT_INDENT_2).decode())
        return
    if life.get("key"):
        out.print(
            f"call {life['call_id']}: {life['agent']}'s {life['tool']} ({life['key']})"
            f" is {life['status']} after {life['attempts']} run(s)",
            markup=False,
        )
    table = Table(title=f"{len(life['records'])} record(s)")
    for col in ("seq", "time", "kind", "what"):
        table.add_column(col, no_wrap=col != "what")
    for r in life["records"]:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["ts"]))
        table.add_row(str(r["seq"]), when, r["kind"], escape(summary(r["record"])))
    out.print(table)
