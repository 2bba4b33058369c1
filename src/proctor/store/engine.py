"""The store: one interface over SQLite and PostgreSQL.

Reads go through SQLAlchemy Core. Writes go through :class:`WriteTx`, which holds the
audit chain's head for the length of one transaction (SQLite ``BEGIN IMMEDIATE``,
PostgreSQL ``SELECT ... FOR UPDATE``) on a DBAPI connection taken from a small bounded
pool: this is the hot path of every decision, so it skips the ORM-level machinery it does
not need.

Connections per process are bounded by ``PROCTOR_POOL_SIZE`` (N): at most N writers and
2N readers, plus one listener for wake-ups and, on SQLite, one WAL checkpointer. A thread
holds a connection only for one transaction, so short-lived threads leave nothing behind.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from .. import _clock
from .._errors import ConfigError, StoreError
from .._extras import missing
from . import schema
from .chain import FORMAT, encode, header_v3, link
from .notify import WakeHub
from .pool import Writer, WriterPool


class WouldBlock(Exception):
    """``write_now`` found the write lock taken; nothing was written. Retry where waiting
    is allowed."""


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


_second: tuple[int, str] = (-1, "")  # the last whole second formatted, and its text


def _iso_time(ts: float) -> str:
    """``ts`` as ISO 8601 UTC with microseconds, as ``datetime`` would write it (rounded
    to the nearest microsecond, so ``time`` and ``ts`` agree for whoever reads both); the
    date and time of day are formatted once a second (a datetime round trip costs about a
    microsecond per record). The cache is one tuple, swapped whole, so threads never see a
    second with another's text."""
    global _second
    whole = int(ts // 1)
    micros = round((ts - whole) * 1e6)
    if micros == 1_000_000:
        whole, micros = whole + 1, 0
    cached = _second
    if cached[0] != whole:
        cached = _second = (whole, datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{cached[1]}.{micros:06d}+00:00"


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
        now = _clock.now()
        record = {
            "v": FORMAT,
            "seq": seq,
            "id": rid,
            "ts": now,
            "time": _iso_time(now),
            "kind": kind,
            "agent": agent,
            "tool": tool,
            "decision": decision,
            **body,
        }
        data = encode(record)
        digest = link(self.head_hash, header_v3(seq, rid, now, kind, agent, tool, decision), data)
        self.sql(
            "INSERT INTO proctor_audit_log"
            " (seq, id, ts, kind, agent, tool, decision, hash, record, fmt)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (seq, rid, now, kind, agent, tool, decision, digest, data.decode(), FORMAT),
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
                    _clock.now(),
                ),
            )
        elif self._dirty:  # the hot path: a decision moves only the head
            self.sql(
                "UPDATE proctor_state SET head_seq = ?, head_hash = ?, updated_at = ? WHERE id = 1",
                (self.head_seq, self.head_hash, _clock.now()),
            )


class Store:
    """SQLite (embedded default) or PostgreSQL behind the same methods."""

    def __init__(
        self,
        url: str,
        *,
        durability: str = "process",
        busy_timeout_ms: int = 5000,
        pool_size: int = 5,
    ) -> None:
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
        # The driver's errors, translated to StoreError wherever a connection is used.
        self.errors: tuple[type[BaseException], ...] = (sqlite3.Error,)
        if self.dialect == "postgresql":
            try:
                import psycopg
            except ImportError as exc:
                raise missing("postgres", exc) from exc
            self.errors = (sqlite3.Error, psycopg.Error)
        self.sqlite_path: str | None = None
        if self.dialect == "sqlite":
            if not parsed.database or parsed.database == ":memory:":
                raise ConfigError("an in-memory SQLite database cannot be shared; give a file path")
            self.sqlite_path = str(Path(parsed.database).expanduser().resolve())
            self.url = f"sqlite:///{self.sqlite_path}"
        self.durability = durability
        self._busy_timeout_ms = busy_timeout_ms
        if pool_size < 1:
            raise ConfigError("the pool size must be at least 1")
        self.pool_size = pool_size
        self.engine = self._make_engine(QueuePool=True)
        self._writer_engine = self._make_engine(QueuePool=False)
        self.writers = WriterPool(self._open_writer, pool_size, busy_timeout_ms / 1000, self.errors)
        # One connection that never waits for SQLite's lock: see ``write_now``.
        self._now_writers = WriterPool(self._open_writer_now, 1, 0.0, self.errors, busy=WouldBlock)
        self._ready = False
        self._ready_lock = threading.Lock()
        self._pid = os.getpid()
        self._qmark = self.dialect == "sqlite"
        self._checkpointer: _Checkpointer | None = None
        self._checkpointer_lock = threading.Lock()
        self._hub: WakeHub | None = None
        self._file_fd: int | None = None  # SQLite: the database file, to notice its deletion

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
            if "application_name" not in make_url(self.url).query:
                kwargs["connect_args"]["application_name"] = "proctor"
            if QueuePool:
                kwargs.update(pool_pre_ping=True)
        if QueuePool:  # readers: at most twice the pool size, waiting as long as a writer
            kwargs.update(
                pool_size=self.pool_size,
                max_overflow=self.pool_size,
                pool_timeout=self._busy_timeout_ms / 1000,
            )
        engine = sa.create_engine(self.url, **kwargs)
        if self.dialect == "postgresql":
            lock_ms = self._busy_timeout_ms

            @event.listens_for(engine, "connect")
            def _on_pg_connect(dbapi_conn: Any, _record: Any) -> None:
                # A writer waiting on the chain's row lock gives up like a SQLite writer
                # does, instead of waiting for ever behind a stuck transaction.
                with dbapi_conn.cursor() as cur:
                    cur.execute(f"SET lock_timeout = {int(lock_ms)}")
                dbapi_conn.commit()

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

    def _open_writer(self) -> Writer:
        """A new writer connection (the pool calls this when it may open one more)."""
        self.ensure_schema()
        try:
            proxy = self._writer_engine.raw_connection()
        except sa.exc.DBAPIError as exc:
            raise StoreError(f"cannot connect to {self.safe_url}: {exc.orig}") from exc
        except self.errors as exc:  # raw_connection hands the driver's errors up unwrapped
            raise StoreError(f"cannot connect to {self.safe_url}: {exc}") from exc
        driver: Any = proxy.driver_connection
        if self.sqlite_path is not None:
            self._watch_file()
            with self._checkpointer_lock:
                if self._checkpointer is None or self._checkpointer.pid != os.getpid():
                    self._checkpointer = _Checkpointer(self.sqlite_path, self._busy_timeout_ms)
        return Writer(proxy, driver, driver.cursor())

    def _open_writer_now(self) -> Writer:
        writer = self._open_writer()
        try:
            writer.cursor.execute("PRAGMA busy_timeout = 0")
        except self.errors as exc:
            with suppress(*self.errors):
                writer.proxy.invalidate()
            raise StoreError(f"cannot configure a connection to {self.safe_url}: {exc}") from exc
        return writer

    def _watch_file(self) -> None:
        """Keep the database file open by descriptor: if someone deletes or replaces the
        file, its link count drops to zero and writes must stop (they would go nowhere)."""
        if self._file_fd is None and self.sqlite_path is not None:
            with self._checkpointer_lock:
                if self._file_fd is None:
                    self._file_fd = os.open(self.sqlite_path, os.O_RDONLY | os.O_CLOEXEC)

    def _check_file(self) -> None:
        fd = self._file_fd
        if fd is not None and os.fstat(fd).st_nlink == 0:
            raise StoreError(
                f"the database file {self.sqlite_path} was deleted or replaced while this"
                " process had it open; decisions are refused until Proctor is restarted"
            )

    @contextmanager
    def write(self) -> Iterator[WriteTx]:
        """A transaction that holds the chain head until it commits."""
        with self._transaction(self.writers, nowait=False) as tx:
            yield tx

    @contextmanager
    def write_now(self) -> Iterator[WriteTx]:
        """``write``, or ``WouldBlock`` at once (nothing written) if it would have to wait for
        another writer. An event loop uses it: an uncontended write commits in place, a
        contended one moves to a thread that may wait. SQLite only (a PostgreSQL write
        waits on the network anyway): elsewhere it always raises ``WouldBlock``."""
        if self.dialect != "sqlite":
            raise WouldBlock("only SQLite writes without waiting")
        with self._transaction(self._now_writers, nowait=True) as tx:
            yield tx

    @contextmanager
    def _transaction(self, pool: WriterPool, *, nowait: bool) -> Iterator[WriteTx]:
        writer = pool.acquire()
        try:
            tx = self._begin(writer)
        except self.errors as exc:
            if nowait and _is_busy(exc):
                self._rollback(writer, pool)
                raise WouldBlock(str(exc)) from exc
            pool.discard(writer)
            if not writer.reused:
                raise StoreError(
                    f"the decision store is unavailable ({self.safe_url}): {exc}"
                ) from exc
            # An idle connection may have died with its server; nothing was written yet,
            # so one fresh connection gets one more try.
            writer = pool.acquire()
            try:
                tx = self._begin(writer)
            except self.errors as exc2:
                pool.discard(writer)
                raise StoreError(
                    f"the decision store is unavailable ({self.safe_url}): {exc2}"
                ) from exc2
            except BaseException:
                self._rollback(writer, pool)
                raise
        except BaseException:
            self._rollback(writer, pool)
            raise
        try:
            yield tx
            tx._finish()
            if self.dialect == "postgresql":
                writer.raw.commit()
            else:
                writer.cursor.execute("COMMIT")
                if self._checkpointer is not None:
                    self._checkpointer.pending = True
                for item_id in tx.woken:
                    self.hub.notify_after_commit(item_id)
        except self.errors as exc:
            pool.discard(writer)
            raise StoreError(f"writing to {self.safe_url} failed: {exc}") from exc
        except BaseException:
            self._rollback(writer, pool)
            raise
        pool.release(writer)

    def _begin(self, writer: Writer) -> WriteTx:
        cur = writer.cursor
        if self.dialect == "sqlite":
            cur.execute("BEGIN IMMEDIATE")
            self._check_file()
            row = cur.execute(
                "SELECT head_seq, head_hash, policy_version, controls_epoch, shadow_version"
                " FROM proctor_state WHERE id = 1"
            ).fetchone()
        else:
            cur.execute(
                "SELECT head_seq, head_hash, policy_version, controls_epoch, shadow_version"
                " FROM proctor_state WHERE id = 1 FOR UPDATE"
            )
            row = cur.fetchone()
        return WriteTx(self, cur, row[0], row[1], row[2], row[3], row[4])

    def _rollback(self, writer: Writer, pool: WriterPool) -> None:
        """Give the connection back clean, or drop it if even that fails."""
        try:
            if self.dialect == "postgresql":
                writer.raw.rollback()
            elif writer.raw.in_transaction:
                writer.cursor.execute("ROLLBACK")
        except self.errors:
            pool.discard(writer)
            return
        pool.release(writer)

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
        self.writers.close()
        self._now_writers.close()
        if self._file_fd is not None:
            os.close(self._file_fd)
            self._file_fd = None
        self.engine.dispose()
        self._writer_engine.dispose()


def _is_busy(exc: BaseException) -> bool:
    """SQLite's "another connection holds the lock" (SQLITE_BUSY or SQLITE_LOCKED)."""
    return isinstance(exc, sqlite3.OperationalError) and (
        "locked" in str(exc) or "busy" in str(exc)
    )


class _Checkpointer:
    """Moves SQLite WAL checkpoints off the decision path onto one daemon thread."""

    INTERVAL = 0.25

    def __init__(self, path: str, busy_timeout_ms: int) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self.pending = False  # a plain flag: an Event's lock costs microseconds per commit
        self.pid = os.getpid()  # a forked child starts its own
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
