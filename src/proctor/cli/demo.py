"""``proctor demo``: two weeks of a governed support agent, then the console to work it.

The demo writes into the database every other command uses by default (``--database``,
else ``PROCTOR_DATABASE_URL``, else ``./.proctor/proctor.db``), so ``proctor queue list``,
``proctor kpi`` or ``proctor serve`` run next in the same directory find it. It never
writes over an existing database unless asked to (``--fresh``, SQLite files only).
"""

from __future__ import annotations

import shutil
import sqlite3
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy.engine import make_url

from .._errors import ConfigError
from .._extras import require
from .._settings import setting
from ..audit.verify import verify
from ..demo.history import MINUTE, Scenario, Summary, backdate
from ..demo.live import LiveRefund, open_live_refunds, wait_and_run
from ..sdk import Proctor
from ..store.engine import normalize_url
from ._common import database_option

out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 120)


def _shown(path: Path) -> str:
    """A path as the user would type it: relative to here when it is below here."""
    try:
        return f"./{path.resolve().relative_to(Path.cwd().resolve())}"
    except ValueError:
        return str(path)


def _describe(path: Path) -> str:
    """What an existing SQLite file holds, read without writing to it."""
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as conn:
            records = conn.execute("SELECT count(*) FROM proctor_audit_log").fetchone()[0]
            names = {r[0] for r in conn.execute("SELECT DISTINCT name FROM proctor_policies")}
    except sqlite3.Error:
        return "a file that is not a Proctor database"
    whose = "the last demo's database" if names == {"support-desk-demo"} else "a Proctor database"
    return f"{whose}, {records:,} records"


def prepare(url: str, fresh: bool) -> tuple[str, str]:
    """(url, how to show it): the database the demo may fill. Refuses one that holds data."""
    parsed = make_url(normalize_url(url))
    if parsed.get_backend_name() != "sqlite":
        if fresh:
            raise ConfigError("--fresh replaces SQLite files only; give an empty database instead")
        with Proctor(url) as px:
            empty = verify(px.store).checked == 0
        if not empty:
            raise ConfigError(
                f"{parsed.render_as_string(hide_password=True)} already holds a Proctor log:"
                " the demo writes only into an empty database"
            )
        return url, parsed.render_as_string(hide_password=True)
    path = Path(parsed.database or "").expanduser()
    shown = _shown(path)
    files = [Path(f"{path}{suffix}") for suffix in ("", "-wal", "-shm", ".migrate-lock")]
    there = any(f.exists() and f.stat().st_size > 0 for f in files[:2])
    if there and not fresh:
        raise ConfigError(
            f"{shown} already exists ({_describe(path)}) and the demo will not write over it."
            " Run `proctor demo --fresh` to replace it, or choose another with"
            " --database sqlite:///PATH"
        )
    for file in files:
        file.unlink(missing_ok=True)
    shutil.rmtree(f"{path}.wake", ignore_errors=True)
    return f"sqlite:///{path.resolve()}", shown


def _history(px: Proctor, seed: int) -> Summary:
    scenario = Scenario(end=time.time() - MINUTE, seed=seed)
    span = scenario.end - scenario.start
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[day]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=out, transient=True) as progress:
        task = progress.add_task("two weeks at the support desk", total=span, day="")

        def advance(t: float) -> None:
            day = time.strftime("%a %d %b %H:%M", time.localtime(t))
            progress.update(task, completed=t - scenario.start, day=day)

        return backdate(px, scenario, advance)


def _report(px: Proctor, summary: Summary, started: float) -> None:
    day = "%a %d %b"
    agent, reviews = summary.agent.counts, summary.reviews.counts
    result = verify(px.store)
    out.print(
        f"Two weeks at the support desk, {time.strftime(day, time.localtime(summary.start))}"
        f" to {time.strftime(day, time.localtime(summary.end))}: {summary.tickets:,} tickets,"
        f" {result.checked:,} records in the decision log,"
        f" {'verified' if result.ok else result.message()} ({time.time() - started:.1f} s)"
    )
    out.print(
        f"  the agent:  {agent.get('replied', 0):,} replies, {agent.get('refunded', 0):,}"
        f" refunds on its own, {agent.get('refund waiting for a human', 0):,} refunds for a"
        f" human, {agent.get('data export denied', 0)} customer exports denied,"
        f" {agent.get('look-up timed out (exception for ops)', 0)} order look-ups timed out"
        f" ({agent.get('run failed: order service down', 0)} runs failed)"
    )
    out.print(
        "  reviewers:  "
        + ", ".join(
            f"{reviews.get(k, 0):,} {k}"
            for k in ("approved", "edited", "rejected", "escalated", "closed", "expired")
        )
    )
    out.print(
        f"  the policy changed {summary.policies - 1} times; the order service had an outage"
        " five days ago, and it is failing again now, under a surge of shipping questions"
    )
    if summary.drift:
        out.print(
            f"  refunds drifted four days ago: {summary.drift} drift detection(s), the refund"
            " tool's stage lowered (proctor drift status)"
        )


def _waiting(live: list[LiveRefund]) -> None:
    out.print()
    out.print("[bold]Two live agents are waiting for you[/bold], first in the billing queue:")
    for r in live:
        out.print(f"  {r.item_id}  refund {r.amount:.2f} on {r.order_id}, customer in a chat")


def _next(live: list[LiveRefund], serving: bool) -> None:
    first = live[0].item_id
    steps = [
        ("proctor queue list", "what waits for a human, most severe first"),
        (f"proctor queue show {first}", "one item: what, why, the run so far"),
        (
            f"proctor queue approve {first} --by ana",
            "approve it"
            + (
                ", and watch its agent run it here"
                if serving
                else " (its agent waits only while the demo serves)"
            ),
        ),
        ("proctor kpi --since 7d", "how the last week went"),
        ("proctor problems", "what to act on first"),
        ("proctor alerts list", "the policy's alerts (the console checks them every 30 s)")
        if serving
        else ("proctor alerts check", "the policy's alerts, checked now"),
        ("proctor audit verify", "the hash-chained decision log, checked"),
    ]
    if not serving:
        steps.append(("proctor serve", "the console on this database"))
    where = "In another terminal, in this directory" if serving else "Next, in this directory"
    out.print()
    out.print(f"{where}, try:")
    width = max(len(cmd) for cmd, _ in steps)
    for cmd, what in steps:
        out.print(f"  [bold]{cmd:<{width}}[/bold]  {what}", markup=True)


@click.command("demo")
@database_option
@click.option("--fresh", is_flag=True, help="Replace the SQLite database if there is one.")
@click.option("--seed", type=int, default=7, show_default=True, help="Same seed, same two weeks.")
@click.option("--no-serve", is_flag=True, help="Write the history and exit.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8700, show_default=True)
def demo(
    database: str | None, fresh: bool, seed: int, no_serve: bool, host: str, port: int
) -> None:
    """Two weeks of a support agent under oversight, then the console to work its queues."""
    if not no_serve:
        require("server")
    started = time.time()
    url, shown = prepare(database or setting("database"), fresh)
    out.print(f"Proctor demo: a support agent under oversight, written into {shown}")
    with Proctor(url) as px:
        summary = _history(px, seed)
        live = open_live_refunds(px)
        _report(px, summary, started)
    _waiting(live)
    if no_serve:
        _next(live, serving=False)
        return
    import uvicorn

    from ..server.app import create_app
    from ..server.auth import create_token

    with Proctor(url) as px:
        _, admin = create_token(px.store, role="admin", name="admin", created_by="proctor demo")
        _, reviewer = create_token(
            px.store,
            role="reviewer",
            name="ana",
            queues=["billing", "finance", "qa", "ops"],
            created_by="proctor demo",
        )
    for refund in live:
        threading.Thread(target=wait_and_run, args=(url, refund, out.print), daemon=True).start()
    out.print()
    out.print(f"Console: [bold]http://{host}:{port}/[/bold]  sign in as reviewer ana with:")
    out.print(f"  [bold]{reviewer}[/bold]")
    out.print(f"  (admin: {admin})")
    out.print("Approve a live agent's refund there and watch it run here.")
    _next(live, serving=True)
    out.print("Ctrl-C stops the console; the database stays.")
    px = Proctor(url)
    try:
        uvicorn.run(create_app(px), host=host, port=port, log_level="warning", access_log=False)
    finally:
        px.close()
