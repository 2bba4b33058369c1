"""``proctor serve`` and ``proctor token``: run the team server and manage who may use it."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from .._extras import require
from ..sdk import Proctor
from ._common import database_option, out


def _split(value: str | None) -> list[str] | None:
    return None if value is None else [v for v in value.split(",")]


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """``--expires 90d``: seconds, parsed as the policy's durations are."""
    from ..policy.durations import parse_duration

    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8700, show_default=True)
@click.option(
    "--max-body",
    type=click.IntRange(min=1024),
    default=1 << 20,
    show_default=True,
    help="Largest request body accepted, in bytes (larger ones get 413).",
)
@database_option
def serve(host: str, port: int, max_body: int, database: str | None) -> None:
    """Serve the API and the review console for a team on one database."""
    require("server")
    import uvicorn

    from ..server.app import create_app
    from ..server.auth import count_tokens, create_token

    px = Proctor(database)
    px.store.ensure_schema()
    if count_tokens(px.store) == 0:
        _, token = create_token(px.store, role="admin", name="admin", created_by="proctor serve")
        out.print("No tokens yet: created the first admin token. It is shown only this once:")
        out.print(f"  {token}")
    app = create_app(px, max_body=max_body)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=10,
        access_log=False,
    )
    server = _Server(config, app)
    out.print(f"Proctor serving on http://{host}:{port} (database {px.store.safe_url})")
    try:
        server.run()
    finally:
        px.close()


class _Server:
    """uvicorn's server, telling long-polling agents to reconnect as soon as it is asked
    to stop (requests in flight still finish)."""

    def __init__(self, config: Any, app: Any) -> None:
        import uvicorn

        outer = self

        class Server(uvicorn.Server):
            def handle_exit(self, sig: int, frame: Any) -> None:
                outer.app.state.shutting_down.set()
                super().handle_exit(sig, frame)

        self.app = app
        self.server = Server(config)

    def run(self) -> None:
        self.server.run()


@click.group("token")
def token() -> None:
    """Create, list and revoke API tokens (run on the server's database)."""


@token.command("create")
@click.option(
    "--role",
    required=True,
    type=click.Choice(["admin", "policy_author", "reviewer", "sme", "agent", "viewer"]),
)
@click.option("--name", required=True, help="Who or what uses it; reviewers' decisions carry it.")
@click.option("--queues", help="Reviewer/SME tokens: the queues they decide in (comma-separated).")
@click.option("--agents", help="Agent tokens: the agents they act as (comma-separated).")
@click.option(
    "--expires",
    callback=_duration,
    metavar="DURATION",
    help="Refuse the token after this long (30m, 12h, 90d). Default: it never expires.",
)
@database_option
def token_create(
    role: str,
    name: str,
    queues: str | None,
    agents: str | None,
    expires: float | None,
    database: str | None,
) -> None:
    """Create a token and print it, once."""
    from ..server.auth import create_token, expiry_text

    with Proctor(database) as px:
        made, secret = create_token(
            px.store,
            role=role,
            name=name,
            queues=_split(queues),
            agents=_split(agents),
            created_by="cli",
            expires_in=expires,
        )
    out.print(
        f"token {made.token_id} for {made.name} ({made.role}), expires"
        f" {expiry_text(made.expires_at)}; shown only this once:"
    )
    click.echo(secret)


@token.command("list")
@database_option
def token_list(database: str | None) -> None:
    """Every token, without secrets."""
    from ..server.auth import list_tokens

    with Proctor(database) as px:
        rows = list_tokens(px.store)
    table = Table(title=f"{len(rows)} token(s)")
    for col in ("id", "name", "role", "queues", "agents", "expires", "revoked"):
        table.add_column(col, no_wrap=col in ("id", "expires"))
    for r in rows:
        table.add_row(
            r["id"],
            r["name"],
            r["role"],
            ",".join(r["queues"] or ["*"]),
            ",".join(r["agents"] or ["*"]),
            r["expires"],
            "yes" if r["revoked"] else "",
        )
    out.print(table)


@token.command("revoke")
@click.argument("token_id")
@database_option
def token_revoke(token_id: str, database: str | None) -> None:
    """Revoke a token by id."""
    from ..server.auth import revoke_token

    with Proctor(database) as px:
        revoke_token(px.store, token_id, by="cli")
    out.print(f"revoked {token_id}")
