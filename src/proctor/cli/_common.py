"""What every command shares: the database option, the consoles, times, JSON output."""

from __future__ import annotations

import sys
import time

import click
import orjson
from rich.console import Console

from .._errors import InvalidRequest
from .._settings import SETTINGS

# Tables keep their columns readable when piped (rich assumes 80 columns off a terminal).
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True)

_DB = next(s for s in SETTINGS if s.name == "database")

database_option = click.option(
    "--database",
    "-d",
    envvar=_DB.env,
    default=None,
    show_envvar=True,
    help=f"{_DB.help} Default: {_DB.default}",
)
json_flag = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def parse_since(value: str | None) -> float | None:
    """``--since``: ``30m``, ``2h``, ``7d`` ago (any duration), or an ISO time."""
    if not value:
        return None
    from ..policy import durations  # here, not above: --help must not load the engine

    try:
        return durations.parse_since(value, time.time())
    except ValueError:
        raise InvalidRequest(f"--since takes 30m, 2h, 7d or an ISO time, not {value!r}") from None


def parse_window(value: str, option: str) -> float:
    """A duration option (``--window 24h``); a bad one is one line naming the option."""
    from ..policy import durations

    try:
        return durations.parse_duration(value)
    except ValueError as exc:
        raise InvalidRequest(f"{option}: {exc}") from None


def risk_text(risk: float | None) -> str:
    """A risk score for people: two decimals (0.8999999999999999 is 0.90); the stored
    value keeps every digit."""
    return "-" if risk is None else f"{risk:.2f}"


def print_json(value: object) -> None:
    click.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())
