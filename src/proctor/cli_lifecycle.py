"""Policy lifecycle and runtime controls from the command line."""

from __future__ import annotations

import re
import sys
import time
from datetime import datetime
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from . import controls
from ._cli_options import database_option
from ._errors import InvalidRequest
from .policy import compile_policy, run_tests
from .policy import lifecycle as lc
from .sdk import Proctor, read_policy_source

out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d)$")


def parse_since(value: str | None) -> float | None:
    """``30m``, ``2h``, ``7d`` ago, or an ISO time."""
    if not value:
        return None
    if m := _RELATIVE.match(value.strip()):
        return (
            time.time() - float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
        )
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise InvalidRequest(f"--since takes 30m, 2h, 7d or an ISO time, not {value!r}") from None


def register(cli: click.Group, policy: click.Group, audit: click.Group) -> None:
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
            lc.activate(
                px.store, report.version, kind="policy.promote", author=author, message=message
            )
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
                f"  e.g. #{e['seq']} {e['tool']} {e['args']}: {e['was']} -> {e['now']}"
                f" ({e['reason']})"
            )
        for why, n in report.skipped.items():
            out.print(f"  not replayed ({why}): {n}")

    @policy.command("init")
    @click.option("--oversight", type=click.Choice(["high", "moderate", "light"]), required=True)
    @click.option("--output", "-o", type=click.Path(path_type=Path, dir_okay=False))
    def policy_init(oversight: str, output: Path | None) -> None:
        """Write a commented starter policy for an oversight level."""
        from .policy.starters import starter

        text = starter(oversight)
        policy = compile_policy(text, "starter")
        assert all(r.passed for r in run_tests(policy))
        if output is None:
            click.echo(text, nl=False)
        else:
            output.write_text(text, encoding="utf-8")
            out.print(f"wrote {output} ({oversight} oversight)")

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

    @cli.command("kpi")
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

        from .telemetry.kpi import compute

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

    @cli.command("kill")
    @click.argument("agent", required=False)
    @click.option("--all", "everyone", is_flag=True, help="Stop every agent.")
    @click.option("--reason", required=True)
    @database_option
    def kill(agent: str | None, everyone: bool, reason: str, database: str | None) -> None:
        """Stop an agent everywhere: every decision is deny and its grants are frozen."""
        if bool(agent) == everyone:
            raise InvalidRequest("name one AGENT or give --all")
        with Proctor(database) as px:
            controls.kill(px.store, agent, reason, by="cli")
        out.print(f"stopped {agent or 'every agent'}: {reason}")

    @cli.command("revive")
    @click.argument("agent", required=False)
    @click.option("--all", "everyone", is_flag=True)
    @database_option
    def revive(agent: str | None, everyone: bool, database: str | None) -> None:
        """Undo a kill: decisions follow the policy again and frozen grants may run."""
        if bool(agent) == everyone:
            raise InvalidRequest("name one AGENT or give --all")
        with Proctor(database) as px:
            controls.revive(px.store, agent, by="cli")
        out.print(f"revived {agent or 'every agent'}")

    @cli.group("agent")
    def agent_group() -> None:
        """Agents' autonomy stages and state."""

    @agent_group.command("set-stage")
    @click.argument("agent")
    @click.argument("stage", type=int)
    @click.option("--reason", required=True)
    @database_option
    def set_stage(agent: str, stage: int, reason: str, database: str | None) -> None:
        """Set an agent's autonomy stage (1 assisted .. 4 strategic), over the policy's."""
        with Proctor(database) as px:
            policy = px.policy.active()
            if policy is not None and agent not in policy.agents:
                raise InvalidRequest(f"agent {agent!r} is not declared in the active policy")
            controls.set_stage(px.store, agent, stage, reason, by="cli")
        out.print(f"{agent} is at stage {stage} ({controls.STAGES[stage]})")

    @agent_group.command("list")
    @database_option
    def agent_list(database: str | None) -> None:
        """The active policy's agents with their stage and whether they are stopped."""
        with Proctor(database) as px:
            policy = px.policy.active()
            with px.store.write() as tx:
                current = controls.load(tx)
        table = Table(title="agents")
        for col in ("agent", "oversight", "stage", "state"):
            table.add_column(col)
        for name, agent in policy.agents.items() if policy else []:
            stage = current.stages.get(name, agent.autonomy)
            stopped = current.kill_reason(name)
            table.add_row(
                name,
                agent.oversight,
                f"{stage} ({controls.STAGES[stage]})",
                f"stopped: {stopped}" if stopped else "running",
            )
        out.print(table)
