"""Create or upgrade the schema on first use, once, even with several processes starting."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

MIGRATIONS = Path(__file__).parent / "migrations"
_LOCK_KEY = 0x50524F43  # "PROC": the advisory lock PostgreSQL migrations take


def _config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("version_table", "proctor_alembic_version")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_config()).get_current_head()


def current_revision(connection: Connection) -> str | None:
    ctx = MigrationContext.configure(connection, opts={"version_table": "proctor_alembic_version"})
    return ctx.get_current_revision()


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
                    command.upgrade(_config(conn), "head")
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        return
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
        if current_revision(conn) != head:
            command.upgrade(_config(conn), "head")
