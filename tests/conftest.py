"""Fixtures: every store test runs on SQLite and on PostgreSQL (a fresh schema per test)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from proctor import Proctor
from proctor.store.tables import audit_log

# A PostgreSQL server others may share: each test run makes a database of its own there
# (dropped at the end), and each test a schema of its own in it.
SERVER_URL = os.environ.get(
    "PROCTOR_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
RUN_DATABASE = f"proctor_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
PG_URL = make_url(SERVER_URL).set(database=RUN_DATABASE).render_as_string(hide_password=False)
EXAMPLE = (
    Path(__file__).resolve().parent.parent / "src" / "proctor" / "examples" / "support-desk.yaml"
)


def _pg_available() -> str | None:
    try:
        with psycopg.connect(SERVER_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        return str(exc)
    return None


_PG_PROBLEM = _pg_available()


def pg_schema_url(schema: str) -> str:
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options=-csearch_path%3D{schema}"


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """This run's own database on the shared server, created once and dropped at the end."""
    if _PG_PROBLEM is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI but unreachable: {_PG_PROBLEM}")
        pytest.skip(f"PostgreSQL unreachable: {_PG_PROBLEM}")
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{RUN_DATABASE}"')
    try:
        yield PG_URL
    finally:
        with psycopg.connect(SERVER_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{RUN_DATABASE}" WITH (FORCE)')


@pytest.fixture
def pg_url(pg_database: str) -> Iterator[str]:
    schema = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield pg_schema_url(schema)
    finally:
        with psycopg.connect(pg_database, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/proctor.db"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    name = "sqlite_url" if request.param == "sqlite" else "pg_url"
    return str(request.getfixturevalue(name))


@pytest.fixture
def px(db_url: str) -> Iterator[Proctor]:
    with Proctor(db_url) as p:
        yield p


@pytest.fixture
def support_px(px: Proctor) -> Proctor:
    px.policy.apply(EXAMPLE)
    return px


def records(px: Proctor, kind: str) -> list[dict[str, Any]]:
    """The decision log's records of one kind, in order, as dictionaries."""
    with px.store.read() as conn:
        rows = conn.execute(
            sa.select(audit_log.c.record).where(audit_log.c.kind == kind).order_by(audit_log.c.seq)
        ).all()
    return [orjson.loads(r[0]) for r in rows]
