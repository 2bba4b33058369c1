"""Settings declared once, as data: the CLI, the environment and the docs read this list."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ._errors import ConfigError


@dataclass(frozen=True)
class Setting:
    name: str
    env: str
    default: str
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "database",
        "PROCTOR_DATABASE_URL",
        "sqlite:///./.proctor/proctor.db",
        "Where decisions, policies and review items live (sqlite:///PATH or postgresql://...).",
    ),
    Setting(
        "durability",
        "PROCTOR_DURABILITY",
        "process",
        "'process': a decision survives the process being killed (SQLite WAL, synchronous=NORMAL);"
        " 'power': it survives power loss too (synchronous=FULL).",
    ),
    Setting(
        "secret_key",
        "PROCTOR_SECRET_KEY",
        "",
        "Signs console session cookies. Unset: a new one each time the server starts (everyone"
        " signs in again); set it when several server processes serve one console.",
    ),
    Setting(
        "public_url",
        "PROCTOR_PUBLIC_URL",
        "",
        "The console's address as people reach it (e.g. https://proctor.example.com); when set,"
        " notifications link to the item or page they are about.",
    ),
    Setting(
        "alert_check_seconds",
        "PROCTOR_ALERT_CHECK_SECONDS",
        "30",
        "How often a server checks the policy's alerts (seconds).",
    ),
    Setting(
        "drift_check_seconds",
        "PROCTOR_DRIFT_CHECK_SECONDS",
        "60",
        "How often a server reads the log for the policy's drift monitors (seconds).",
    ),
    Setting(
        "pool_size",
        "PROCTOR_POOL_SIZE",
        "5",
        "Database connections per process: at most this many writers and twice as many readers"
        " (plus one wake-up listener, and one WAL checkpointer on SQLite).",
    ),
    Setting(
        "lease_seconds",
        "PROCTOR_LEASE_SECONDS",
        "30",
        "How long a claim to run an approved action lasts unless its runner renews it (it does,"
        " every third of this, while the tool runs). A runner silent for longer, wherever it"
        " ran, leaves the action in doubt for a human to settle.",
    ),
    Setting(
        "call_retention",
        "PROCTOR_CALL_RETENTION",
        "7d",
        "How long a call's identity is kept after the call (30m, 12h, 7d): a repeat within it"
        " returns the recorded result instead of running again.",
    ),
    Setting(
        "refusal_window_seconds",
        "PROCTOR_REFUSAL_WINDOW_SECONDS",
        "60",
        "Requests refused for want of a valid token are counted per client address over this"
        " many seconds, and logged as one access.denied record per address and window.",
    ),
    Setting(
        "refusal_limit",
        "PROCTOR_REFUSAL_LIMIT",
        "30",
        "Requests without a valid token one client address may have refused per window;"
        " beyond, it gets 429 (Retry-After) unless its token was accepted before.",
    ),
    Setting(
        "busy_timeout_ms",
        "PROCTOR_BUSY_TIMEOUT_MS",
        "5000",
        "How long a SQLite writer waits for another process's write lock before failing closed.",
    ),
)

_BY_NAME = {s.name: s for s in SETTINGS}


def markdown_table() -> str:
    """The settings as the README lists them (a test keeps the two the same)."""
    rows = ["| variable | default | what it sets |", "| --- | --- | --- |"]
    for s in SETTINGS:
        rows.append(f"| `{s.env}` | {f'`{s.default}`' if s.default else '(unset)'} | {s.help} |")
    return "\n".join(rows)


def setting(name: str) -> str:
    """The value of a setting: its environment variable if set, else its default."""
    s = _BY_NAME[name]
    return os.environ.get(s.env) or s.default


def int_setting(name: str) -> int:
    raw = setting(name)
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{_BY_NAME[name].env} must be a whole number, got {raw!r}") from exc


def float_setting(name: str) -> float:
    """A positive number of seconds (or other unit) from a setting."""
    raw = setting(name)
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{_BY_NAME[name].env} must be a number, got {raw!r}") from exc
    if not value > 0:
        raise ConfigError(f"{_BY_NAME[name].env} must be greater than zero, got {raw!r}")
    return value
