"""The gateway's configuration: flags and/or a small YAML file, checked once at start.

```yaml
upstream:                     # exactly one of command / url
  command: [npx, -y, "@modelcontextprotocol/server-filesystem", /srv/files]
  env: {LOG_LEVEL: info}      # command only: extra environment
  # url: https://tools.internal/mcp
  # headers: {Authorization: "Bearer ..."}   # url only
agent: support-bot            # the agent a client without a mapping acts as
context: {channel: mcp}       # context every call's rules see
clients:                      # a client's identity -> its agent and context
  alice: {agent: billing-bot, context: {team: billing}}
tokens: {alice: ALICE_TOKEN}  # HTTP: bearer token (read from that variable) -> identity
wait: 0                       # seconds a call waits for its review before answering "pending"
max_wait: 300                 # the most a client may ask for with _meta "proctor/wait"
progress_interval: 5          # seconds between progress notifications while waiting
serve: {transport: stdio}     # or {transport: http, host: 127.0.0.1, port: 8765, path: /mcp}
```
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..._errors import ConfigError

TRANSPORTS = ("stdio", "http")
_TOP = {
    "upstream",
    "agent",
    "context",
    "clients",
    "tokens",
    "wait",
    "max_wait",
    "progress_interval",
    "serve",
    "database",
}


@dataclass(frozen=True)
class Upstream:
    """The MCP server behind the gateway: a command line (stdio) or a URL (streamable HTTP)."""

    command: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if bool(self.command) == bool(self.url):
            raise ConfigError("upstream: give a command (stdio) or a url (streamable HTTP)")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"upstream url must be http:// or https://, not {self.url!r}")
        if self.url is None and self.headers:
            raise ConfigError("upstream headers go with a url")
        if self.url is not None and (self.env or self.cwd is not None):
            raise ConfigError("upstream env and cwd go with a command")

    def describe(self) -> str:
        return self.url if self.url is not None else " ".join(self.command)


@dataclass(frozen=True)
class ClientRule:
    """What one client identity acts as."""

    agent: str
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GatewayConfig:
    """Everything ``proctor mcp proxy`` needs, from flags and/or YAML (flags win)."""

    upstream: Upstream
    agent: str | None = None
    context: dict[str, Any] = field(default_factory=dict)
    clients: dict[str, ClientRule] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)  # identity -> environment variable
    wait: float = 0.0
    max_wait: float = 300.0
    progress_interval: float = 5.0
    transport: str = "stdio"
    host: str = "127.0.0.1"
    port: int = 8765
    path: str = "/mcp"
    database: str | None = None

    def __post_init__(self) -> None:
        for name in ("wait", "max_wait", "progress_interval"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{name} must be a number of seconds, not {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"{name} must be a number of seconds >= 0, not {value!r}")
        if self.progress_interval <= 0:
            raise ConfigError("progress_interval must be more than 0 seconds")
        if self.wait > self.max_wait:
            raise ConfigError(f"wait ({self.wait}) is more than max_wait ({self.max_wait})")
        if self.transport not in TRANSPORTS:
            raise ConfigError(f"serve transport must be stdio or http, not {self.transport!r}")
        if self.tokens and self.transport != "http":
            raise ConfigError("tokens identify clients over HTTP: serve with transport http")
        if not self.path.startswith("/"):
            raise ConfigError(f"serve path must start with '/', not {self.path!r}")

    def bearer_tokens(self) -> dict[str, str]:
        """token -> identity, read from the environment now (a missing variable is an error)."""
        found: dict[str, str] = {}
        for identity, variable in self.tokens.items():
            value = os.environ.get(variable, "")
            if not value:
                raise ConfigError(f"tokens: {identity}'s token variable {variable} is not set")
            if value in found:
                raise ConfigError(f"tokens: {found[value]} and {identity} have the same token")
            found[value] = identity
        return found


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ConfigError(f"{where} must be a mapping with string keys")
    return value


def _strings(value: Any, where: str) -> dict[str, str]:
    found = _mapping(value, where)
    if not all(isinstance(v, str) for v in found.values()):
        raise ConfigError(f"{where} values must be strings")
    return found


def _upstream(raw: Any) -> Upstream | None:
    if raw is None:
        return None
    data = _mapping(raw, "upstream")
    unknown = set(data) - {"command", "env", "cwd", "url", "headers"}
    if unknown:
        raise ConfigError(f"upstream: unknown key {sorted(unknown)[0]!r}")
    command = data.get("command") or ()
    if isinstance(command, str):
        import shlex

        command = shlex.split(command)
    if not isinstance(command, list | tuple) or not all(isinstance(c, str) for c in command):
        raise ConfigError("upstream command must be a list of strings (or one string)")
    cwd = data.get("cwd")
    if cwd is not None and not isinstance(cwd, str):
        raise ConfigError("upstream cwd must be a string")
    url = data.get("url")
    if url is not None and not isinstance(url, str):
        raise ConfigError("upstream url must be a string")
    return Upstream(
        command=tuple(command),
        env=_strings(data.get("env"), "upstream env"),
        cwd=cwd,
        url=url,
        headers=_strings(data.get("headers"), "upstream headers"),
    )


def _clients(raw: Any) -> dict[str, ClientRule]:
    rules: dict[str, ClientRule] = {}
    for identity, rule in _mapping(raw, "clients").items():
        if isinstance(rule, str):
            rules[identity] = ClientRule(agent=rule)
            continue
        data = _mapping(rule, f"clients.{identity}")
        unknown = set(data) - {"agent", "context"}
        if unknown:
            raise ConfigError(f"clients.{identity}: unknown key {sorted(unknown)[0]!r}")
        agent = data.get("agent")
        if not isinstance(agent, str) or not agent:
            raise ConfigError(f"clients.{identity} needs an agent")
        rules[identity] = ClientRule(agent, dict(_mapping(data.get("context"), "context")))
    return rules


def load(
    source: str | Path | None = None, /, *, upstream: Upstream | None = None, **flags: Any
) -> GatewayConfig:
    """The configuration from a YAML file (if any) with flags over it; ``None`` flags are
    not given."""
    data: dict[str, Any] = {}
    if source is not None:
        try:
            text = Path(source).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"no such gateway configuration file: {source}") from None
        try:
            data = _mapping(yaml.safe_load(text), str(source))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
        unknown = set(data) - _TOP
        if unknown:
            raise ConfigError(f"{source}: unknown key {sorted(unknown)[0]!r}")
    serve = _mapping(data.get("serve"), "serve")
    unknown_serve = set(serve) - {"transport", "host", "port", "path"}
    if unknown_serve:
        raise ConfigError(f"serve: unknown key {sorted(unknown_serve)[0]!r}")
    merged: dict[str, Any] = {
        "agent": data.get("agent"),
        "context": dict(_mapping(data.get("context"), "context")),
        "clients": _clients(data.get("clients")),
        "tokens": _strings(data.get("tokens"), "tokens"),
        "database": data.get("database"),
        **{k: data[k] for k in ("wait", "max_wait", "progress_interval") if k in data},
        **{k: serve[k] for k in ("transport", "host", "port", "path") if k in serve},
    }
    merged.update({k: v for k, v in flags.items() if v is not None})
    chosen = upstream or _upstream(data.get("upstream"))
    if chosen is None:
        raise ConfigError("no upstream: give COMMAND or --url, or an upstream in the file")
    return GatewayConfig(upstream=chosen, **merged)
