"""The ``proctor`` command. A user's mistake is one line on stderr and exit status 2."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import orjson
from rich.console import Console

from ._cli_options import database_option
from ._errors import ConfigError, PolicyError, ProctorError
from .policy import CompiledPolicy, compile_policy, run_tests
from .sdk import Proctor, read_policy_source

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

policy_file = click.argument("file", type=click.Path(path_type=Path, dir_okay=False))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="proctor")
def cli() -> None:
    """Proctor: policy-as-code, human review and a tamper-evident log for AI agents."""


@cli.group()
def policy() -> None:
    """Check, test and apply policy files."""


def _compile(file: Path) -> CompiledPolicy:
    text, source = read_policy_source(file)
    return compile_policy(text, source)


@policy.command("check")
@policy_file
def policy_check(file: Path) -> None:
    """Validate a policy: schema, references and CEL. Prints FILE:LINE:COL on error."""
    p = _compile(file)
    out.print(
        f"{file}: ok: policy '{p.name}' version {p.version[:12]}, {len(p.rules)} rules, "
        f"{len(p.agents)} agents, {len(p.queues)} queues"
    )


@policy.command("test")
@policy_file
def policy_test(file: Path) -> None:
    """Run the policy's own tests: a line each and a summary; exit 1 if any fails."""
    results = run_tests(_compile(file))
    for r in results:
        if r.passed:
            out.print(f"[green]PASS[/green] {r.name}")
        else:
            out.print(f"[red]FAIL[/red] {r.name}: {r.message}")
    failed = sum(not r.passed for r in results)
    out.print(f"{len(results) - failed} passed, {failed} failed")
    if failed:
        sys.exit(1)


@policy.command("apply")
@policy_file
@database_option
@click.option("--author", help="Who made this change.")
@click.option("--message", "-m", help="Why it was made.")
@click.option(
    "--shadow",
    is_flag=True,
    help="Evaluate it beside the active policy on live traffic, without enforcing it.",
)
def policy_apply(
    file: Path, database: str | None, author: str | None, message: str | None, shadow: bool
) -> None:
    """Validate, test and activate a policy for every process on the database."""
    with Proctor(database) as px:
        if shadow:
            from .policy import lifecycle

            text, source = read_policy_source(file)
            candidate = compile_policy(text, source)
            failed = [r for r in run_tests(candidate) if not r.passed]
            if failed:
                raise PolicyError(
                    f"policy test {failed[0].index + 1} fails: {failed[0].message}", source=source
                )
            lifecycle.apply_shadow(px.store, candidate, text, author, message)
            out.print(f"shadowing {file}: version {candidate.version} (not enforced)")
            return
        version = px.policy.apply(file, author=author, message=message)
    out.print(f"applied {file}: version {version}")


@cli.group()
def audit() -> None:
    """Verify and export the decision log."""


@audit.command("verify")
@database_option
def audit_verify(database: str | None) -> None:
    """Check every record's link and the chain head; exit 1 naming the first bad record."""
    from .audit.verify import verify

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
    from .audit.export import export_jsonl

    with Proctor(database) as px:
        if output is None:
            n = export_jsonl(px.store, sys.stdout, since)
        else:
            with output.open("w", encoding="utf-8") as fh:
                n = export_jsonl(px.store, fh, since)
    err.print(f"exported {n} records")


@cli.group()
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


def _print_json(data: dict[str, Any]) -> None:
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


@bench.command("gate")
@rules_option
@click.option("--database", "-d", default=None, help="Database URL (default: a fresh SQLite file).")
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
        from .bench import bench_trace

        _print_json(bench_trace(rules=rules, n=count))
        return
    from .bench import bench_gate as run

    _print_json(run(rules=rules, database=database, n=count))


@bench.command("policy")
@rules_option
@click.option("-n", "count", type=click.IntRange(min=100), default=50_000, show_default=True)
@json_flag
def bench_policy(rules: int, count: int, as_json: bool) -> None:
    """Policy evaluation alone."""
    from .bench import bench_policy as run

    _print_json(run(rules=rules, n=count))


@bench.command("verify")
@click.option("--records", type=click.IntRange(min=1000), default=200_000, show_default=True)
@click.option("--database", "-d", default=None, help="Database URL (default: a fresh SQLite file).")
@json_flag
def bench_verify(records: int, database: str | None, as_json: bool) -> None:
    """`audit verify` throughput over a log of synthetic decisions."""
    from .bench import bench_verify as run

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
    from .bench_review import bench_review as run

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
    from .bench_server import bench_server as run

    _print_json(run(database=database, seconds=seconds, rules=rules))


@bench.command("kill")
@click.option("--database", "-d", default=None, help="Database URL (default: a fresh SQLite file).")
@click.option("--rounds", type=click.IntRange(min=5), default=100, show_default=True)
@json_flag
def bench_kill(database: str | None, rounds: int, as_json: bool) -> None:
    """Kill-switch propagation to another process (kill acknowledged -> first deny)."""
    from .bench_controls import bench_kill as run

    _print_json(run(database=database, rounds=rounds))


def _add_queue() -> None:
    from .cli_demo import demo
    from .cli_queue import queue
    from .cli_server import serve, token

    cli.add_command(queue)
    cli.add_command(serve)
    cli.add_command(token)
    cli.add_command(demo)
    from .cli_alerts import alerts, problems

    cli.add_command(alerts)
    cli.add_command(problems)
    from .cli_lifecycle import register

    register(cli, policy, audit)


_add_queue()


def main() -> None:
    """Entry point: Proctor's own errors become one line and exit 2, never a traceback."""
    try:
        cli.main(standalone_mode=False)
    except PolicyError as exc:
        err.print(exc.located(), markup=False)
        sys.exit(2)
    except ProctorError as exc:
        err.print(f"error: {exc}", markup=False)
        sys.exit(2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        err.print("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)


__all__ = ["ConfigError", "cli", "main"]
