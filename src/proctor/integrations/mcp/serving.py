"""Serving the gateway over stdio (one client: whoever started it) or streamable HTTP (many
clients, each known by its bearer token when ``tokens`` are configured)."""

from __future__ import annotations

import hmac
from typing import Any

from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from starlette.applications import Starlette

from ..._errors import ProctorError
from .gateway import Gateway


class StaticTokens:
    """A token verifier for tokens configured by environment variable: token -> subject."""

    def __init__(self, tokens: dict[str, str]) -> None:
        self._tokens = dict(tokens)

    async def verify_token(self, token: str) -> AccessToken | None:
        for known, subject in self._tokens.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                return AccessToken(token=token, client_id=subject, scopes=[], subject=subject)
        return None


def http_app(gateway: Gateway) -> Starlette:
    """The gateway as an ASGI app (``config.path``, default ``/mcp``)."""
    config = gateway.config
    options: dict[str, Any] = {}
    tokens = config.bearer_tokens()
    if tokens:
        base = f"http://{config.host}:{config.port}"
        options = {
            "auth": AuthSettings(
                issuer_url=base,  # type: ignore[arg-type]  # pydantic parses the URL
                resource_server_url=base + config.path,  # type: ignore[arg-type]
                validate_token_resource=False,  # tokens are checked by StaticTokens
            ),
            "token_verifier": StaticTokens(tokens),
        }
    return gateway.server.streamable_http_app(
        streamable_http_path=config.path, host=config.host, **options
    )


async def serve(gateway: Gateway) -> None:
    """Connect the upstream, then serve until the client goes (stdio) or the process is
    stopped (HTTP)."""
    config = gateway.config
    async with gateway.running():
        if config.transport == "stdio":
            from mcp.server.stdio import stdio_server

            async with stdio_server() as (read, write):
                await gateway.server.run(
                    read, write, gateway.server.create_initialization_options()
                )
            return
        import uvicorn

        app = http_app(gateway)
        server = uvicorn.Server(
            uvicorn.Config(app, host=config.host, port=config.port, log_level="warning")
        )
        await server.serve()


def run(gateway: Gateway) -> None:
    """``serve`` to the end; Proctor's own error (a bad upstream, a bad setting) comes out
    as itself, not inside the task groups' exception groups."""
    import anyio

    try:
        anyio.run(serve, gateway)
    except BaseExceptionGroup as group:
        found = _first_proctor_error(group)
        if found is None:
            raise
        raise found from group


def _first_proctor_error(group: BaseExceptionGroup[BaseException]) -> ProctorError | None:
    for exc in group.exceptions:
        if isinstance(exc, ProctorError):
            return exc
        if isinstance(exc, BaseExceptionGroup):
            found = _first_proctor_error(exc)
            if found is not None:
                return found
    return None
