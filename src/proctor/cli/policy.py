"""``proctor policy``: check, test, apply, and the life of policy versions."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.table import Table

from .._errors import InvalidRequest, PolicyError
from ..policy import CompiledPolicy, compile_policy, run_tests
from ..policy import lifecycle as lc
from ..sdk import Proctor, read_policy_source
from ._common import database_option, err, out, parse_since


@click.group()
def policy() -> None:
    """Check, test and apply policy files."""


policy_file = click.argument("file", type=click.Path(path_type=Path, dir_okay=False))


def _compile(file: Path) -> CompiledPolicy:
    text, source = read_policy_source(file)
    return compile_policy(text, source)


@policy.command("check")
@policy_file
@click.option("--strict", is_flag=True, help="Treat warnings as errors (exit 2).")
def policy_check(file: Path, strict: bool) -> None:
    """Validate a policy: schema, references and CEL (errors: FILE:LINE:COL, exit 2),
    then warn of what loads but cannot work: rules no envelope lets match, comparisons
    that never hold or always fail (FILE:LINE:COL: warning: ..., on stderr)."""
    from ..policy.lint import lint

    text, source = read_policy_source(file)
    p = compile_policy(text, source)
    findings = lint(p, source)
    for finding in findings:
        err.print(finding.located("error" if strict else "warning"), markup=False)
    if strict and findings:
        sys.exit(2)
    warned = f", {len(findings)} warning(s)" if findings else ""
    out.print(
        f"{file}: ok: policy '{p.name}' version {p.version[:12]}, {len(p.rules)} rules, "
        f"{len(p.agents)} agents, {len(p.queues)} queues{warned}"
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
            text, source = read_policy_source(file)
            candidate = compile_policy(text, source)
            failed = [r for r in run_tests(candidate) if not r.passed]
            if failed:
                raise PolicyError(
                    f"policy test {failed[0].index + 1} fails: {failed[0].message}", source=source
                )
            lc.apply_shadow(px.store, candidate, text, author, message)
            out.print(f"shadowing {file}: version {candidate.version} (not enforced)")
            return
        version = px.policy.apply(file, author=author, message=message)
    out.print(f"applied {file}: version {version}")


@policy.command("history")
@database_option
def policy_history(database: str | None) -> None:
    """Every activation, newest first."""
    with Proctor(database) as px:
        rows = lc.history(px.store)
    table = Table(title=f"{len(rows)} policy change(s)")
    for col in ("time", "what", "version", "name", "by", "message", ""):
        table.add_column(col)
    for r in rows:
        what = {
            "policy.apply": "rollback" if r["rollback"] else "apply",
            "policy.shadow": "shadow",
            "policy.promote": "promote",
        }[r["kind"]]
        mark = "active" if r["active"] else "shadow" if r["shadow"] else ""
        table.add_row(
            r["time"][:19],
            what,
            (r["version"] or "")[:12],
            r["name"] or "",
            r["author"] or "",
            r["message"] or "",
            mark,
        )
    out.print(table)


@policy.command("diff")
@click.argument("old")
@click.argument("new")
@database_option
def policy_diff(old: str, new: str, database: str | None) -> None:
    """What changed between two stored versions: rules, queues, agents, defaults."""
    with Proctor(database) as px:
        a = lc.load_version(px.store, lc.resolve(px.store, old))
        b = lc.load_version(px.store, lc.resolve(px.store, new))
    lines = lc.diff(a.document, b.document)
    out.print(f"{a.version[:12]} -> {b.version[:12]}: {len(lines)} change(s)")
    for line in lines:
        color = {"+": "green", "-": "red"}.get(line[0], "yellow")
        out.print(f"[{color}]{line}[/{color}]", markup=True)


@policy.command("rollback")
@click.argument("version", required=False)
@database_option
@click.option("--author")
@click.option("--message", "-m")
def policy_rollback(
    version: str | None, database: str | None, author: str | None, message: str | None
) -> None:
    """Activate an earlier version (default: the one before the active one)."""
    with Proctor(database) as px:
        target = lc.resolve(px.store, version) if version else lc.previous_version(px.store)
        lc.activate(
            px.store, target, kind="policy.apply", author=author, message=message, rollback=True
        )
    out.print(f"rolled back: version {target} is active")


@policy.command("shadow-report")
@database_option
def shadow_report(database: str | None) -> None:
    """How the shadow candidate disagrees with the active policy on live traffic."""
    with Proctor(database) as px:
        report = lc.shadow_report(px.store)
    if report.version is None:
        out.print("no shadow policy (apply one with --shadow)")
    out.print(
        f"shadow {str(report.version)[:12]}: {report.disagreements} disagreement(s)"
        f" in {report.decisions} decision(s)"
    )
    for (was, now), n in report.transitions.most_common():
        out.print(f"  active {was} -> shadow {now}: {n}")
    for rule, n in report.by_rule.most_common():
        out.print(f"  shadow rule {rule}: {n}")
    for e in report.examples:
        out.print(f"  e.g. #{e['seq']} {e['tool']} {e['args']}: {e['active']} -> {e['shadow']}")


@policy.command("promote")
@database_option
@click.option("--author")
@click.option("--message", "-m")
def promote(database: str | None, author: str | None, message: str | None) -> None:
    """Make the shadow candidate the active policy."""
    with Proctor(database) as px:
        report = lc.shadow_report(px.store)
        if report.version is None:
            raise InvalidRequest("there is no shadow policy to promote")
        lc.activate(px.store, report.version, kind="policy.promote", author=author, message=message)
    out.print(f"promoted: version {report.version} is active")


@policy.command("replay")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--since", help="Only decisions after this (30m, 2h, 7d or an ISO time).")
@database_option
def policy_replay(file: Path, since: str | None, database: str | None) -> None:
    """How recorded decisions would change under a candidate policy."""
    text, source = read_policy_source(file)
    candidate = compile_policy(text, source)
    with Proctor(database) as px:
        report = lc.replay(px.store, candidate, parse_since(since))
    out.print(
        f"replayed {report.replayed} decision(s) under {candidate.version[:12]}:"
        f" {report.changed} would change"
    )
    for (was, now), n in sorted(report.transitions.items()):
        out.print(f"  {was} -> {now}: {n}")
    for rule, n in report.by_rule.most_common():
        out.print(f"  changed by rule {rule}: {n}")
    for e in report.examples:
        out.print(
            f"  e.g. #{e['seq']} {e['tool']} {e['args']}: {e['was']} -> {e['now']} ({e['reason']})"
        )
    for why, n in report.skipped.items():
        out.print(f"  not replayed ({why}): {n}")


@policy.command("init")
@click.option(
    "--oversight",
    type=click.Choice(["high", "moderate", "light"]),
    help="How closely people watch the agent (default: moderate).",
)
@click.option("--output", "-o", type=click.Path(path_type=Path, dir_okay=False))
def policy_init(oversight: str | None, output: Path | None) -> None:
    """Write a commented starter policy for an oversight level."""
    from ..policy.starters import starter

    if oversight is None:  # said on stderr, so the policy on stdout stays clean YAML
        oversight = "moderate"
        err.print("no --oversight given: writing a moderate-oversight starter")
    text = starter(oversight)
    policy = compile_policy(text, "starter")
    assert all(r.passed for r in run_tests(policy))
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        out.print(f"wrote {output} ({oversight} oversight)")
