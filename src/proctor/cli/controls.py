"""``proctor kill``, ``revive`` and ``agent``: runtime controls over agents."""

from __future__ import annotations

import click
from rich.table import Table

from .. import controls
from .._errors import InvalidRequest
from ..sdk import Proctor
from ._common import database_option, out


@click.command("kill")
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


@click.command("revive")
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


@click.group("agent")
def agent_group() -> None:
    """Agents' autonomy stages and state."""


@agent_group.command("set-stage")
@click.argument("agent")
@click.argument("stage", type=int)
@click.option("--reason", required=True)
@click.option("--tool", default=None, help="Only this tool of the agent.")
@database_option
def set_stage(agent: str, stage: int, reason: str, tool: str | None, database: str | None) -> None:
    """Set an agent's (or one tool's) autonomy stage (1 assisted .. 4 strategic), over the
    policy's; this is how a person restores a stage a drift monitor lowered."""
    with Proctor(database) as px:
        policy = px.policy.active()
        if policy is not None and agent not in policy.agents:
            raise InvalidRequest(f"agent {agent!r} is not declared in the active policy")
        controls.set_stage(px.store, agent, stage, reason, by="cli", tool=tool)
    where = f"{agent}/{tool}" if tool else agent
    out.print(f"{where} is at stage {stage} ({controls.STAGES[stage]})")


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
        for key, tool_stage in sorted(current.stages.items()):
            if key.startswith(f"{name}/"):
                table.add_row(f"  {key}", "", f"{tool_stage} ({controls.STAGES[tool_stage]})", "")
    out.print(table)
