"""The ``proctor`` command. A user's mistake is one line on stderr and exit status 2.

Each verb group lives in a module of its own and is imported only when it runs, so
``proctor --help`` answers without loading the engine, the database layer or the server.
"""

from __future__ import annotations

import importlib
import sys

import click

# verb -> "module:attribute", relative to this package (or to the package above, for bench)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "policy": ("policy", "policy", "Check, test and apply policy files; their history."),
    "queue": ("queue", "queue", "List, inspect and decide review items."),
    "audit": ("audit", "audit", "Verify, export and replay the decision log."),
    "serve": ("server", "serve", "Serve the API and the review console for a team."),
    "token": ("server", "token", "Create, list and revoke API tokens."),
    "demo": ("demo", "demo", "A support desk under oversight, with its console."),
    "alerts": ("monitor", "alerts", "The policy's alerts and the notifications they send."),
    "problems": ("monitor", "problems", "What to act on first, ranked."),
    "drift": ("drift", "drift", "Drift monitors: check, status, history, calibrate, reset."),
    "kpi": ("monitor", "kpi", "Workflow KPIs: completion, latency, escalation, cost, SLA."),
    "kill": ("controls", "kill", "Stop an agent everywhere."),
    "revive": ("controls", "revive", "Undo a kill."),
    "agent": ("controls", "agent_group", "Agents' autonomy stages and state."),
    "breakers": ("breakers", "breakers", "Circuit breakers: list them, reset one."),
    "bench": ("..bench", "bench", "Benchmarks that print one JSON object."),
    "mcp": ("mcp", "mcp_group", "An MCP gateway: every tool call through Proctor."),
}


class LazyGroup(click.Group):
    """A group whose commands are imported when one is run (or its help is asked for)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = COMMANDS.get(cmd_name)
        if found is None:
            return None
        module = importlib.import_module(
            f"proctor.{found[0][2:]}" if found[0].startswith("..") else f"{__name__}.{found[0]}"
        )
        command: click.Command = getattr(module, found[1])
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The list in ``--help`` from the table above: no command is imported for it."""
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="proctor")
def cli() -> None:
    """Proctor: policy-as-code, human review and a tamper-evident log for AI agents."""


def main() -> None:
    """Entry point: Proctor's own errors become one line and exit 2, never a traceback."""
    from .._errors import PolicyError, ProctorError
    from ._common import err

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


__all__ = ["cli", "main"]
