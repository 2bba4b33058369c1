"""What every command shares: the database option, the consoles, times, JSON output."""

from __future__ import annotations

import re
import sys
import time
from datetime import datetime

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


def print_json(value: object) -> None:
    click.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())
