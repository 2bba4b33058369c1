"""The store: one interface over SQLite and PostgreSQL.

Reads go through SQLAlchemy Core. Writes go through :class:`WriteTx`, which holds the
audit chain's head for the length of one transaction (SQLite ``BEGIN IMMEDIATE``,
PostgreSQL ``SELECT ... FOR UPDATE``) on a per-thread DBAPI connection: this is the hot
path of every decision, so it skips the ORM-level machinery it does not need.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from .._errors import ConfigError, StoreError
from ..audit.chain import canonical, header, link
from . import schema
from .notify import WakeHub

DBAPI_ERRORS: tuple[type[BaseException], ...] = (sqlite3.Error, psycopg.Error)


@dataclass(frozen=True, slots=True)
class Appended:
    seq: int
    id: str
    hash: str


def normalize_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` for the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class WriteTx:
    """One write transaction holding the chain head: append records, run statements."""

    def __init__(
        self,
        store: Store,
        cursor: Any,
        head_seq: int,
        head_hash: str,
        policy_version: str | None,
        controls_epoch: int = 0,
        shadow_version: str | None = None,
    ) -> None:
        self._store = store
        self.cursor = cursor
        self.head_seq = head_seq
        self.head_hash = head_hash
        self.policy_version = policy_version
        self.controls_epoch = controls_epoch
        self.shadow_version = shadow_version
        self._dirty = False
        self._policy_changed = False
        self.woken: list[str] = []

    def wake(self, item_id: str) -> None:
        """Wake processes waiting on ``item_id`` once this transaction commits."""
        self._store.hub.notify_in_tx(self.cursor, item_id)
        self.woken.append(item_id)

    def sql(self, statement: str, params: tuple[Any, ...] = ()) -> Any:
        """Run one statement written with ``?`` placeholders; returns the cursor."""
        return self.cursor.execute(self._store.placeholders(statement), params)

    def append(
        self,
        kind: str,
        body: dict[str, Any],
        *,
        agent: str | None = None,
        tool: str | None = None,
        decision: str | None = None,
        record_id: str | None = None,
    ) -> Appended:
        seq = self.head_seq + 1
        rid = record_id or os.urandom(16).hex()
        now = time.time()
        record = {
            "v": 1,
            "seq": seq,
            "id": rid,
            "time": datetime.fromtimestamp(now, UTC).isoformat(),
            "kind": kind,
            "agent": agent,
            "tool": tool,
            "decision": decision,
            **body,
        }
        data = canonical(record)
        digest = link(self.head_hash, header(seq, kind, agent, tool, decision), data)
        self.sql(
            "INSERT INTO proctor_audit_log (seq, id, ts, kind, agent, tool, decision, hash, record)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (seq, rid, now, kind, agent, tool, decision, digest, data.decode()),
        )
        self.head_seq, self.head_hash, self._dirty = seq, digest, True
        return Appended(seq, rid, digest)

    def set_policy_version(self, version: str | None) -> None:
        self.policy_version = version
        self._policy_changed = True

    def set_shadow_version(self, version: str | None) -> None:
        self.shadow_version = version
        self._policy_changed = True

    def bump_controls(self) -> None:
        """Every process reloads its agent controls at its next decision."""
        self.controls_epoch += 1
        self._policy_changed = True

    def _finish(self) -> None:
        if self._policy_changed:
            self.sql(
                "UPDATE proctor_state SET head_seq = ?, head_hash = ?, policy_version = ?,"
                " controls_epoch = ?, shadow_version = ?, updated_at = ? WHERE id = 1",
                (
                    self.head_seq,
                    self.head_hash,
                    self.policy_version,
                    self.controls_epoch,
                    self.shadow_version,
                    time.time(),
                ),
            )
        elif self._dirty:  # the hot path: a decision moves only the head
            self.sql(
                "UPDATE proctor_state SET head_seq = ?, head_hash = ?, updated_at = ? WHERE id = 1",
                (self.head_seq, self.head_hash, time.time()),
            )


class Store:
    """SQLite (embedded default) or PostgreSQL behind the same methods."""

    def __init__(self, url: str, *, durability: str = "process", busy_timeout_ms: int = 5000):
        if durability not in ("process", "power"):
            raise ConfigError("durability must be 'process' or 'power'")
        self.url = normalize_url(url)
        try:
            parsed = make_url(self.url)
        except sa.exc.ArgumentError as exc:
            raise ConfigError(f"not a database URL: {url!r}") from exc
        self.dialect = parsed.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise ConfigError(
                f"unsupported database {self.dialect!r}: use sqlite:/// or postgresql://"
            )
        self.sqlite_path: str | None = None
        if self.dialect == "sqlite":
            if not parsed.database or parsed.database == ":memory:":
                raise ConfigError("an in-memory SQLite database cannot be shared; give a file path")
            self.sqlite_path = str(Path(parsed.database).expanduser().resolve())
            self.url = f"sqlite:///{self.sqlite_path}"
        self.durability = durability
        self._busy_timeout_ms = busy_timeout_ms
        self.engine = self._make_engine(QueuePool=True)
        self._writer_engine = self._make_engine(QueuePool=False)
        self._local = threading.local()
        self._writers: list[Any] = []
        self._writers_lock = threading.Lock()
        self._ready = False
        self._ready_lock = threading.Lock()
        self._pid = os.getpid()
        self._qmark = self.dialect == "sqlite"
        self._checkpointer: _Checkpointer | None = None
        self._hub: WakeHub | None = None

    @property
    def hub(self) -> WakeHub:
        """Wake-ups for waiters in this process; started on first use."""
        if self._hub is None:
            conninfo = None
            if self.dialect == "postgresql":
                conninfo = (
                    make_url(self.url)
                    .set(drivername="postgresql")
                    .render_as_string(hide_password=False)
                )
            self._hub = WakeHub(self.dialect, self.sqlite_path, conninfo)
        return self._hub

    # -- connections -------------------------------------------------------------------

    def _make_engine(self, *, QueuePool: bool) -> sa.Engine:  # noqa: N803
        kwargs: dict[str, Any] = {} if QueuePool else {"poolclass": NullPool}
        if self.dialect == "sqlite":
            kwargs["connect_args"] = {
                "timeout": self._busy_timeout_ms / 1000,
                "check_same_thread": False,
            }
        else:
            kwargs["connect_args"] = {"connect_timeout": 5}
            if QueuePool:
                kwargs.update(pool_size=5, max_overflow=20, pool_pre_ping=True)
        engine = sa.create_engine(self.url, **kwargs)
        if self.dialect == "sqlite":
            sync = "FULL" if self.durability == "power" else "NORMAL"
            busy = self._busy_timeout_ms

            @event.listens_for(engine, "connect")
            def _on_connect(dbapi_conn: Any, _record: Any) -> None:
                dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute(f"PRAGMA synchronous={sync}")
                cur.execute(f"PRAGMA busy_timeout={busy}")
                # Checkpoints (and their fsync) run on a background thread; this larger
                # automatic threshold only bounds the WAL if that thread cannot keep up.
                cur.execute("PRAGMA wal_autocheckpoint=16384")
                cur.close()

            @event.listens_for(engine, "begin")
            def _on_begin(conn: sa.Connection) -> None:
                conn.exec_driver_sql("BEGIN")

        return engine

    def placeholders(self, statement: str) -> str:
        return statement if self._qmark else statement.replace("?", "%s")

    def ensure_schema(self) -> None:
        if self._ready:
            return
        with self._ready_lock:
            if self._ready:
                return
            if self.sqlite_path is not None:
                Path(self.sqlite_path).parent.mkdir(parents=True, exist_ok=True)
            try:
                schema.upgrade(self.engine, self.sqlite_path)
            except sa.exc.DBAPIError as exc:
                raise StoreError(f"cannot open the database {self.safe_url}: {exc.orig}") from exc
            except OSError as exc:
                raise StoreError(f"cannot open the database {self.safe_url}: {exc}") from exc
            self._ready = True

    @property
    def safe_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    def _writer(self) -> Any:
        if os.getpid() != self._pid:  # a forked child must not share the parent's sockets
            self._local = threading.local()
            self._writers = []
            self._checkpointer = None
            self._pid = os.getpid()
        conn = getattr(self._local, "conn", None)
        if conn is None:
            self.ensure_schema()
            try:
                proxy = self._writer_engine.raw_connection()
            except sa.exc.DBAPIError as exc:
                raise StoreError(f"cannot connect to {self.safe_url}: {exc.orig}") from exc
            conn = self._local.conn = proxy
            driver: Any = proxy.driver_connection
            self._local.cursor = driver.cursor()
            with self._writers_lock:
                self._writers.append(proxy)
                if self.sqlite_path is not None and self._checkpointer is None:
                    self._checkpointer = _Checkpointer(self.sqlite_path, self._busy_timeout_ms)
        return conn

    @contextmanager
    def write(self) -> Iterator[WriteTx]:
        """A transaction that holds the chain head until it commits."""
        proxy = self._writer()
        raw = proxy.driver_connection
        try:
            cur = self._local.cursor
            if self.dialect == "sqlite":
                cur.execute("BEGIN IMMEDIATE")
                row = cur.execute(
                    "SELECT head_seq, head_hash, policy_version, controls_epoch, shadow_version"
                    " FROM proctor_state WHERE id = 1"
                ).fetchone()
            else:
                row = cur.execute(
                    "SELECT head_seq, head_hash, policy_version, controls_epoch, shadow_version"
                    " FROM proctor_state WHERE id = 1 FOR UPDATE"
                ).fetchone()
            tx = WriteTx(self, cur, row[0], row[1], row[2], row[3], row[4])
        except DBAPI_ERRORS as exc:
            self._discard(raw)
            raise StoreError(f"the decision store is unavailable ({self.safe_url}): {exc}") from exc
        try:
            yield tx
            tx._finish()
            if self.dialect == "postgresql":
                raw.commit()
            else:
                cur.execute("COMMIT")
                if self._checkpointer is not None:
                    self._checkpointer.pending = True
                for item_id in tx.woken:
                    self.hub.notify_after_commit(item_id)
        except DBAPI_ERRORS as exc:
            self._discard(raw)
            raise StoreError(f"writing to {self.safe_url} failed: {exc}") from exc
        except BaseException:
            self._rollback(raw)
            raise

    def _rollback(self, raw: Any) -> None:
        try:
            raw.rollback() if self.dialect == "postgresql" else raw.execute("ROLLBACK")
        except DBAPI_ERRORS:
            self._discard(raw)

    def _discard(self, raw: Any) -> None:
        """Drop a connection in an unknown state; the next write opens a fresh one."""
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with self._writers_lock:
                if conn in self._writers:
                    self._writers.remove(conn)
            with suppress(*DBAPI_ERRORS):
                conn.invalidate()

    @contextmanager
    def read(self) -> Iterator[sa.Connection]:
        """A SQLAlchemy Core connection for queries."""
        self.ensure_schema()
        try:
            with self.engine.connect() as conn:
                yield conn
        except sa.exc.DBAPIError as exc:
            raise StoreError(f"reading from {self.safe_url} failed: {exc.orig}") from exc

    def close(self) -> None:
        if self._hub is not None:
            self._hub.close()
            self._hub = None
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        with self._writers_lock:
            writers, self._writers = self._writers, []
        for conn in writers:
            with suppress(*DBAPI_ERRORS):
                conn.close()
        self._local = threading.local()
        self.engine.dispose()
        self._writer_engine.dispose()


class _Checkpointer:
    """Moves SQLite WAL checkpoints off the decision path onto one daemon thread."""

    INTERVAL = 0.25

    def __init__(self, path: str, busy_timeout_ms: int) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self.pending = False  # a plain flag: an Event's lock costs microseconds per commit
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="proctor-wal-checkpoint", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        conn = sqlite3.connect(
            self.path,
            isolation_level=None,
            check_same_thread=False,
            timeout=self.busy_timeout_ms / 1000,
        )
        try:
            while not self._stopped.wait(self.INTERVAL):
                if not self.pending:
                    continue
                self.pending = False
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.OperationalError:
                    continue  # busy or locked: the next round tries again
        finally:
            conn.close()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)
