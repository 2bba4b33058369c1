"""``proctor bench``: reproducible measurements that print JSON. Budgets live in DESIGN.md.

Each command imports its benchmark when it runs, so ``proctor --help`` stays fast.
"""

from __future__ import annotations

from typing import Any

import click
import orjson


@click.group()
def bench() -> None:
    """Benchmarks that print one JSON object."""


rules_option = click.option(
    "--rules",
    type=click.IntRange(1, 10_000),
    default=50,
    show_default=True,
    help="Rules in the synthetic policy.",
)
json_flag = click.option("--json", "as_json", is_flag=True, help="Print JSON (the only format).")
database_option = click.option(
    "--database", "-d", default=None, help="Database URL (default: a fresh SQLite file)."
)


def _print_json(data: dict[str, Any]) -> None:
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


@bench.command("gate")
@rules_option
@database_option
@click.option("-n", "count", type=click.IntRange(min=100), default=20_000, show_default=True)
@json_flag
@click.option(
    "--trace",
    is_flag=True,
    help="Tool calls with tracing off vs on and exporting over OTLP (SQLite).",
)
def bench_gate(rules: int, database: str | None, count: int, as_json: bool, trace: bool) -> None:
    """Gate decisions: evaluate + durable hash-chained record."""
    if trace:
        from .gate import bench_trace

        _print_json(bench_trace(rules=rules, n=count))
        return
    from .gate import bench_gate as run

    _print_json(run(rules=rules, database=database, n=count))


@bench.command("drift")
@click.option("--stable", type=click.IntRange(min=10_000), default=100_000, show_default=True)
@click.option("--trials", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--log", "log_events", type=click.IntRange(min=0), default=10_000, show_default=True)
@json_flag
def bench_drift(stable: int, trials: int, log_events: int, as_json: bool) -> None:
    """Drift detectors: false alarms per 10,000 stable events, detection delay (events)
    after an abrupt change, events/s; and a monitor reading a real log."""
    try:
        from .drift import bench_drift as run
    except ImportError as exc:
        from .._extras import missing

        raise missing("drift", exc) from None
    _print_json(run(stable=stable, trials=trials, log_events=log_events))


@bench.command("calls")
@rules_option
@database_option
@click.option("-n", "count", type=click.IntRange(min=100), default=10000, show_default=True)
@json_flag
def bench_calls(rules: int, database: str | None, count: int, as_json: bool) -> None:
    """What a call identity costs the allow path: the gate's decision, and a whole tool
    call (and what a run's hold check costs it)."""
    from .calls import bench_calls as run

    _print_json(run(rules=rules, n=count, database=database))


@bench.command("adapters")
@click.option(
    "--framework",
    "-f",
    type=click.Choice(["langgraph", "openai-agents", "mcp", "crewai", "pydantic-ai"]),
    required=True,
    help="Which integration to measure.",
)
@click.option("-n", "count", type=click.IntRange(min=50), default=2000, show_default=True)
@json_flag
def bench_adapters(framework: str, count: int, as_json: bool) -> None:
    """What an integration adds to a tool call over a bare ``@px.tool`` call (p50, p99)."""
    import importlib

    module = importlib.import_module(f"proctor.bench.adapter_{framework.replace('-', '_')}")
    _print_json(module.run(n=count))


@bench.command("policy")
@rules_option
@click.option("-n", "count", type=click.IntRange(min=100), default=50_000, show_default=True)
@json_flag
def bench_policy(rules: int, count: int, as_json: bool) -> None:
    """Policy evaluation alone."""
    from .gate import bench_policy as run

    _print_json(run(rules=rules, n=count))


@bench.command("verify")
@click.option("--records", type=click.IntRange(min=1000), default=200_000, show_default=True)
@click.option("--database", "-d", default=None, help="Database URL (default: a fresh SQLite file).")
@json_flag
def bench_verify(records: int, database: str | None, as_json: bool) -> None:
    """`audit verify` throughput over a log of synthetic decisions."""
    from .gate import bench_verify as run

    _print_json(run(records=records, database=database))


@bench.command("review")
@click.option("--database", "-d", default=None, help="Database URL (default: a fresh SQLite file).")
@click.option(
    "--rounds",
    type=click.IntRange(min=10),
    default=200,
    show_default=True,
    help="Approvals timed from the reviewer's return to the agent's tool body.",
)
@click.option(
    "--items",
    type=click.IntRange(min=10),
    default=1000,
    show_default=True,
    help="Items decided at each reviewer concurrency (1, 4, 16).",
)
@json_flag
def bench_review(database: str | None, rounds: int, items: int, as_json: bool) -> None:
    """Wake-up latency across processes and reviewer decisions per second."""
    from .review import bench_review as run

    _print_json(run(database=database, rounds=rounds, items=items))


@bench.command("server")
@click.option("--database", "-d", default=None, help="Database URL (default: a fresh SQLite file).")
@click.option(
    "--seconds",
    type=click.FloatRange(min=0.5),
    default=5.0,
    show_default=True,
    help="How long each concurrency level (1, 8, 32 clients) runs.",
)
@rules_option
@json_flag
def bench_server(database: str | None, seconds: float, rules: int, as_json: bool) -> None:
    """Decisions per second and latency over HTTP on loopback."""
    from .._extras import require

    require("server")
    from .server import bench_server as run

    _print_json(run(database=database, seconds=seconds, rules=rules))


@bench.command("kill")
@click.option("--database", "-d", default=None, help="Database URL (default: a fresh SQLite file).")
@click.option("--rounds", type=click.IntRange(min=5), default=100, show_default=True)
@json_flag
def bench_kill(database: str | None, rounds: int, as_json: bool) -> None:
    """Kill-switch propagation to another process (kill acknowledged -> first deny)."""
    from .controls import bench_kill as run

    _print_json(run(database=database, rounds=rounds))


@bench.command("heal")
@database_option
@click.option(
    "-n",
    "count",
    type=click.IntRange(min=50),
    default=1000,
    show_default=True,
    help="Payments per mode (with --gate: tool calls per side).",
)
@click.option("--seed", type=int, default=7, show_default=True, help="The service's seed.")
@click.option(
    "--gate",
    is_flag=True,
    help="Instead: what a closed breaker adds to an allowed call (p50, interleaved).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def bench_heal(database: str | None, count: int, seed: int, gate: bool, as_json: bool) -> None:
    """Self-healing against a flaky service on loopback: healing on, off, and the agent's
    own blind retries (completion, duplicate side effects, escalations, latency)."""
    if gate:
        from .heal import bench_breaker

        _print_json(bench_breaker(n=count, database=database))
        return
    from .heal import bench_heal as run
    from .heal import table

    data = run(n=count, database=database, seed=seed)
    if as_json:
        _print_json(data)
    else:
        from rich.console import Console

        Console().print(table(data))
