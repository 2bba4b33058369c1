"""``proctor demo``: a governed support agent on bundled tickets, and the console to watch it."""

from __future__ import annotations

import shutil
import sys
import threading
from importlib.resources import files
from pathlib import Path

import click
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from .._errors import Denied, Rejected
from .._extras import require
from ..audit.verify import verify
from ..demo.agent import SupportAgent, Tally, load_tickets, train
from ..sdk import Proctor

out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 120)


def _fresh(workspace: Path) -> str:
    workspace.mkdir(parents=True, exist_ok=True)
    db = workspace / "proctor.db"
    for suffix in ("", "-wal", "-shm", ".migrate-lock"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    shutil.rmtree(str(db) + ".wake", ignore_errors=True)
    return f"sqlite:///{db.resolve()}"


def run_workload(url: str) -> Tally:
    """Apply the demo policy and let the agent work through every ticket."""
    policy = files("proctor.demo").joinpath("policy.yaml").read_text(encoding="utf-8")
    tally = Tally()
    with Proctor(url) as px:
        px.policy.apply(policy, author="proctor demo", message="the demo's support-desk policy")
        tickets = load_tickets()
        model = train(tickets)
        agent = SupportAgent(px, wait=0)
        with Progress(console=out, transient=True) as progress:
            task = progress.add_task("support agent at work", total=len(tickets))
            for n, ticket in enumerate(tickets):
                agent.handle(ticket, model, tally)
                if n % 80 == 40:
                    agent.try_forbidden_export(tally)
                progress.advance(task)
        _report(px, tally)
    return tally


def _report(px: Proctor, tally: Tally) -> None:
    table = Table(title="What the agent did")
    table.add_column("outcome")
    table.add_column("count", justify="right")
    for what, n in sorted(tally.counts.items()):
        table.add_row(what, str(n))
    out.print(table)
    pending = px.reviews.list()
    by_queue: dict[str, dict[str, int]] = {}
    for item in pending:
        by_queue.setdefault(item.queue, {}).setdefault(item.kind, 0)
        by_queue[item.queue][item.kind] += 1
    queues = Table(title="Waiting for a human")
    for col in ("queue", "approval", "exception", "sample", "choice"):
        queues.add_column(col, justify="right" if col != "queue" else "left")
    for queue, kinds in sorted(by_queue.items()):
        queues.add_row(
            queue, *(str(kinds.get(k, 0)) for k in ("approval", "exception", "sample", "choice"))
        )
    out.print(queues)
    result = verify(px.store)
    out.print(f"Decision log: {result.message()}")


def _live_agent(url: str, n: int, amount: float) -> None:
    """An agent that blocks on a large refund until someone decides in the console."""
    with Proctor(url) as px:
        agent = SupportAgent(px, wait=None, seed=100 + n)
        with px.run(
            agent="support-bot", ticket=f"LIVE-{n}", confidence=0.96, sources=[f"tickets/LIVE-{n}"]
        ):
            try:
                result = agent.issue_refund(f"A-LIVE-{n}", amount, reason="damaged on arrival")
                out.print(
                    f"[green]live agent {n}:[/green] approved in the console, so it ran: {result}"
                )
            except Rejected as exc:
                out.print(f"[red]live agent {n}:[/red] rejected in the console: {exc.reason}")
            except Denied as exc:
                out.print(f"live agent {n}: {exc.reason}")


@click.command("demo")
@click.option(
    "--dir",
    "workspace",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("proctor-demo"),
    show_default=True,
    help="The demo's workspace.",
)
@click.option("--no-serve", is_flag=True, help="Run the workload and exit.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8700, show_default=True)
def demo(workspace: Path, no_serve: bool, host: str, port: int) -> None:
    """Run a sample support agent over a few hundred tickets, then serve the console."""
    url = _fresh(workspace)
    out.print(f"Demo workspace: {workspace}  (database {url})")
    run_workload(url)
    if no_serve:
        return
    require("server")
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
    for n, amount in enumerate((180.0, 420.0)):
        threading.Thread(target=_live_agent, args=(url, n + 1, amount), daemon=True).start()
    out.print()
    out.print(f"Console: [bold]http://{host}:{port}/[/bold]")
    out.print(f"Sign in as reviewer ana with:  [bold]{reviewer}[/bold]")
    out.print(f"(admin token: {admin})")
    out.print(
        "Two live agents are waiting on refunds in the billing queue: approve one and "
        "watch it run here.  Ctrl-C stops."
    )
    px = Proctor(url)
    try:
        uvicorn.run(create_app(px), host=host, port=port, log_level="warning", access_log=False)
    finally:
        px.close()
