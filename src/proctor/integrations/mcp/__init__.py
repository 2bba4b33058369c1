"""Proctor and MCP: ``proctor mcp proxy`` (a gateway in front of any MCP server) and
``@gated`` (the gate inside an MCP server of your own). Needs the ``mcp`` extra."""

from __future__ import annotations

from ..._extras import missing

try:
    import mcp  # noqa: F401  # the extra's one check, before anything imports from it
except ImportError as exc:  # pragma: no cover - exercised by an install without the extra
    raise missing("mcp", exc) from exc

from .authoring import gated
from .config import ClientRule, GatewayConfig, Upstream, load
from .gateway import Caller, Gateway, UpstreamLost, UpstreamToolError
from .results import META_KEY, refusal

__all__ = [
    "META_KEY",
    "Caller",
    "ClientRule",
    "Gateway",
    "GatewayConfig",
    "Upstream",
    "UpstreamLost",
    "UpstreamToolError",
    "gated",
    "load",
    "refusal",
]
