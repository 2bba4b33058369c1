"""``proctor mcp proxy``: an MCP gateway, every tool call through Proctor."""

from __future__ import annotations

import click

from .._errors import InvalidRequest
from .._settings import SETTINGS
from ._common import err

_DB = next(s for s in SETTINGS if s.name == "database")


@click.group("mcp")
def mcp_group() -> None:
    """MCP: a gateway in front of an MCP server."""


@mcp_group.command(
    "proxy", context_settings={"allow_interspersed_args": False, "show_default": True}
)
@click.argument("command", nargs=-1)
@click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="A YAML file (docs/integrations/mcp.md); flags override it.",
)
@click.option(
    "--url", default=None, help="The upstream's streamable HTTP URL (instead of COMMAND)."
)
@click.option(
    "--env",
    "-e",
    "env",
    multiple=True,
    metavar="NAME=VALUE",
    help="An environment variable for the upstream COMMAND (which gets only a safe"
    " few of the gateway's own); repeatable.",
)
@click.option("--agent", "-a", default=None, help="The agent a client without a mapping acts as.")
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=None,
    help="Seconds a call waits for its review before answering 'pending' [file or 0].",
)
@click.option(
    "--max-wait",
    type=click.FloatRange(min=0),
    default=None,
    help="The most a client may ask for with _meta 'proctor/wait' [file or 300].",
)
@click.option(
    "--progress-interval",
    type=click.FloatRange(min=0.05),
    default=None,
    help="Seconds between progress notifications while waiting [file or 5].",
)
@click.option(
    "--transport",
    "-t",
    type=click.Choice(["stdio", "http"]),
    default=None,
    help="How the gateway is served [file or stdio].",
)
@click.option("--host", default=None, help="HTTP: address to listen on [file or 127.0.0.1].")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=None, help="HTTP: port [file or 8765]."
)
@click.option("--path", default=None, help="HTTP: the MCP endpoint's path [file or /mcp].")
@click.option(
    "--database",
    "-d",
    envvar=_DB.env,
    default=None,
    show_envvar=True,
    help=f"{_DB.help} [file or {_DB.default}]",
)
def proxy(
    command: tuple[str, ...],
    config_path: str | None,
    url: str | None,
    env: tuple[str, ...],
    agent: str | None,
    wait: float | None,
    max_wait: float | None,
    progress_interval: float | None,
    transport: str | None,
    host: str | None,
    port: int | None,
    path: str | None,
    database: str | None,
) -> None:
    """Serve the tools of the MCP server that COMMAND starts (or that --url serves), each
    call decided by the active policy: allowed calls are forwarded, denied and pending ones
    answered with a tool error naming the reason, rule ids and review item.

    \b
      proctor mcp proxy --agent files-bot -- npx -y @modelcontextprotocol/server-filesystem /srv
      proctor mcp proxy -c gateway.yaml --transport http --port 8765
    """
    from .._extras import require

    require("mcp")
    from ..integrations.mcp import Gateway, Upstream, load
    from ..integrations.mcp.serving import run
    from ..sdk import Proctor

    variables = {}
    for pair in env:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise InvalidRequest(f"--env takes NAME=VALUE, not {pair!r}")
        variables[name] = value
    upstream = None
    if command or url:
        upstream = Upstream(command=tuple(command), url=url, env=variables)
    elif variables:
        raise InvalidRequest("--env goes with an upstream COMMAND")
    config = load(
        config_path,
        upstream=upstream,
        agent=agent,
        wait=wait,
        max_wait=max_wait,
        progress_interval=progress_interval,
        transport=transport,
        host=host,
        port=port,
        path=path,
        database=database,
    )
    if config.transport == "http":
        config.bearer_tokens()  # a token variable that is not set: say so before starting
    with Proctor(config.database) as px:
        if px.policy.active() is None:
            err.print("warning: no policy is active: every call will be denied", markup=False)
        gateway = Gateway(px, config)
        if config.transport == "http":
            err.print(
                f"proctor mcp proxy: {config.upstream.describe()} on"
                f" http://{config.host}:{config.port}{config.path}",
                markup=False,
            )
        run(gateway)
