"""The store under stress: bounded connections, connect failures refused cleanly, and a
database file deleted under a running process."""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url
from tests.asgi_client import AppClient
from tests.conftest import SERVER_URL

from proctor import Denied, Proctor, StoreError
from proctor.server.app import create_app
from proctor.server.auth import create_token
from proctor.store.engine import _iso_time

POLICY = """
policy: store-test
agents: {bot: {tools: [lookup]}}
rules: [{id: ok, when: 'tool == "lookup"', decide: allow}]
"""


def _decide_in_threads(px: Proctor, threads: int, calls: int) -> list[BaseException]:
    @px.tool(agent="bot")
    def lookup(n: int) -> int:
        return n

    errors: list[BaseException] = []

    def work() -> None:
        try:
            for n in range(calls):
                lookup(n)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion below
            errors.append(exc)

    started = [threading.Thread(target=work) for _ in range(threads)]
    for t in started:
        t.start()
    for t in started:
        t.join(60)
    return errors


# -- connections are bounded and come back when threads end ----------------------------------


def _open_files(path: str) -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(path):  # the database, its WAL and shared-memory files
            count += 1
    return count


def test_sqlite_connections_stay_bounded_over_many_short_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROCTOR_POOL_SIZE", "3")
    db = tmp_path / "proctor.db"
    with Proctor(f"sqlite:///{db}") as px:
        px.policy.apply(POLICY)
        assert _decide_in_threads(px, threads=60, calls=3) == []
        # 3 writers (3 files each: db, -wal, -shm), up to 6 readers, the checkpointer, and
        # the one descriptor kept to notice the file's deletion; 60 threads left nothing.
        assert px.store.writers.open <= 3
        assert _open_files(str(db)) <= 3 * 3 + 6 * 3 + 3 + 1
        assert _decide_in_threads(px, threads=60, calls=1) == []
        assert px.store.writers.open <= 3


@pytest.fixture
def pg_named(pg_url: str) -> str:
    """The test schema's URL with an application name of its own, to count connections."""
    return f"{pg_url}&application_name=proctor-{uuid.uuid4().hex[:12]}"


def _backends(name: str) -> int:
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (name,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_postgresql_connections_stay_bounded_over_many_short_threads(
    pg_named: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROCTOR_POOL_SIZE", "3")
    name = pg_named.rsplit("application_name=", 1)[1]
    with Proctor(pg_named) as px:
        px.policy.apply(POLICY)
        peak = [0]
        stop = threading.Event()

        def watch() -> None:
            while not stop.wait(0.05):
                peak[0] = max(peak[0], _backends(name))

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            assert _decide_in_threads(px, threads=60, calls=3) == []
        finally:
            stop.set()
            watcher.join()
        # 3 writers + 6 readers + the wake-up listener; before the pool, 60 threads kept 60.
        assert peak[0] <= 3 + 6 + 1
        assert _backends(name) <= 3 + 6 + 1
    # Closed: the server ends each backend a moment after its client hangs up.
    deadline = time.monotonic() + 10
    while _backends(name) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _backends(name) == 0


# -- a connection that cannot be opened is a refusal, not a driver error ---------------------


@pytest.fixture
def limited_role(pg_database: str) -> Iterator[str]:
    """A login role allowed two connections, owning a schema of its own."""
    role = "px_limited_" + uuid.uuid4().hex[:8]
    schema = "s_" + uuid.uuid4().hex[:12]
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 2")
        conn.execute(f"CREATE SCHEMA {schema} AUTHORIZATION {role}")
    url = make_url(pg_database).set(username=role).render_as_string(hide_password=False)
    try:
        yield f"{url}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(pg_database, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                (role,),
            )
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
            conn.execute(f"DROP ROLE {role}")


@contextmanager
def _role_at_its_limit(px: Proctor) -> Iterator[None]:
    """Idle writers closed and both of the role's connections held by readers: the next
    write needs a connection the server refuses."""
    px.store.writers.close()
    with px.store.read() as one, px.store.read() as two:
        one.exec_driver_sql("SELECT 1")
        two.exec_driver_sql("SELECT 1")
        yield


def test_a_connection_refused_by_the_server_denies_the_action(limited_role: str) -> None:
    with Proctor(limited_role) as px:
        px.policy.apply(POLICY)

        @px.tool(agent="bot")
        def lookup(n: int) -> int:
            raise AssertionError("a tool must not run when its decision was not recorded")

        with _role_at_its_limit(px):
            with pytest.raises(Denied) as info:
                lookup(1)
            assert "too many connections" in info.value.reason
            assert info.value.rule_ids == ("store-unavailable",)
            with pytest.raises(StoreError, match="too many connections"):
                px.policy.apply(POLICY + "\n# another version\n")


def test_a_connection_refused_by_the_server_is_503_over_http(limited_role: str) -> None:
    with Proctor(limited_role) as px:
        px.policy.apply(POLICY)
        _, token = create_token(px.store, role="agent", name="bot", agents=["bot"])
        auth = {"Authorization": f"Bearer {token}"}
        action = {"agent": "bot", "tool": "lookup", "args": {"n": 1}}
        client = AppClient(create_app(px, sweep=False))
        try:
            assert client.post("/api/v1/actions", json=action, headers=auth).status_code == 200
            with _role_at_its_limit(px):  # the token is cached: only the decision needs a write
                r = client.post("/api/v1/actions", json=action, headers=auth)
            assert r.status_code == 503, r.text
            assert "too many connections" in r.json()["message"]
        finally:
            client.close()


# -- a database file deleted under a running process -----------------------------------------


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_deleted_database_file_fails_closed(tmp_path: Path, how: str) -> None:
    db = tmp_path / "proctor.db"
    with Proctor(f"sqlite:///{db}") as px:
        px.policy.apply(POLICY)
        ran: list[int] = []

        @px.tool(agent="bot")
        def lookup(n: int) -> int:
            ran.append(n)
            return n

        assert lookup(1) == 1
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        if how == "replaced":  # a new, empty database where the old one was
            with Proctor(f"sqlite:///{db}") as fresh:
                fresh.store.ensure_schema()
        for n in range(2, 12):
            with pytest.raises(Denied, match="deleted or replaced"):
                lookup(n)
        assert ran == [1]


def test_the_newest_migration_is_found_without_alembic() -> None:
    """The store reads the head revision from the files' names; Alembic must agree."""
    from alembic.script import ScriptDirectory

    from proctor.store import schema

    assert (
        schema.head_revision() == ScriptDirectory.from_config(schema._config()).get_current_head()
    )


def test_the_tables_match_the_migrations(tmp_path: Path) -> None:
    """tables.py and the Alembic revisions describe the same schema."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from proctor.store.tables import metadata

    with Proctor(f"sqlite:///{tmp_path}/p.db") as px:
        px.store.ensure_schema()
        with px.store.engine.connect() as conn:
            changes = compare_metadata(MigrationContext.configure(conn), metadata)
    assert [
        c for c in changes if c[0] != "remove_table" or c[1].name != "proctor_alembic_version"
    ] == []


def test_a_records_time_is_its_ts_to_the_nearest_microsecond() -> None:
    """``time`` and ``ts`` say the same instant, as datetime rounds it, for anyone who
    reads both; the second's text is cached, so a rounding up into the next second counts."""
    rng = random.Random(11)
    stamps = [0.0, 1e9 + 0.25, 1795311097.5000069, 1795311097.9999996, 1795311099.0]
    stamps += [rng.uniform(0, 4e9) for _ in range(20000)]
    for ts in stamps:
        assert _iso_time(ts) == datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds")
