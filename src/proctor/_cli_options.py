"""Options shared by every ``proctor`` command group, generated from the settings list."""

from __future__ import annotations

import click

from ._settings import SETTINGS

_DB = next(s for s in SETTINGS if s.name == "database")

database_option = click.option(
    "--database",
    "-d",
    envvar=_DB.env,
    default=None,
    show_envvar=True,
    help=f"{_DB.help} Default: {_DB.default}",
)
