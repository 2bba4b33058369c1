"""Create or upgrade the schema on first use, once, even with several processes starting.

Alembic is imported only when a migration might run: most processes open a database that
is already up to date, and the import costs a tenth of a second.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, inspect, text

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
_LOCK_KEY = 0x50524F43  # "PROC": the advisory lock PostgreSQL migrations take


def _config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("version_table", "proctor_alembic_version")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str | None:
    """The newest revision, from the migration files' names (``NNNN_what.py``): reading
    them through Alembic would import it on every start."""
    numbers = sorted(p.name.split("_", 1)[0] for p in (MIGRATIONS / "versions").glob("[0-9]*_*.py"))
    return numbers[-1] if numbers else None


def current_revision(connection: Connection) -> str | None:
    """The database's revision, read from Alembic's version table (None before any)."""
    if not inspect(connection).has_table("proctor_alembic_version"):
        return None
    row = connection.execute(text("SELECT version_num FROM proctor_alembic_version")).first()
    return str(row[0]) if row is not None else None


def upgrade(engine: Engine, sqlite_path: str | None) -> None:
    """Bring the database to the newest revision; cheap when it already is."""
    head = head_revision()
    with engine.connect() as conn:
        if current_revision(conn) == head:
            return
    if sqlite_path is not None:
        lock_path = sqlite_path + ".migrate-lock"
        fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            with engine.begin() as conn:
                if current_revision(conn) != head:
                    _upgrade(conn)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        return
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
        if current_revision(conn) != head:
            _upgrade(conn)


def _upgrade(conn: Connection) -> None:
    from alembic import command

    command.upgrade(_config(conn), "head")
