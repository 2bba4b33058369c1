"""Cross-process wake-ups for agents waiting on a human, without polling the database.

SQLite: each waiting process binds a Unix datagram socket (in Linux's abstract namespace,
so long database paths do not matter) and leaves a marker file naming it in
``<database>.wake/``; a reviewer's process sends the item id to every socket named there
after its commit.
PostgreSQL: ``LISTEN``/``NOTIFY`` on one channel; the notification is sent inside the
deciding transaction, so it is delivered exactly when the decision commits.

Either way one daemon thread per process receives and sets the waiters' events. A lost
message only costs latency: waiters also re-read the item every few seconds.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from pathlib import Path
from typing import Any

CHANNEL = "proctor_review"


class WakeHub:
    """Per-process registry: item id -> events of the threads waiting on it."""

    def __init__(self, dialect: str, sqlite_path: str | None, pg_conninfo: str | None) -> None:
        self.dialect = dialect
        self.directory = Path(sqlite_path + ".wake") if sqlite_path else None
        self.pg_conninfo = pg_conninfo
        self._waiters: dict[str, set[Any]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._stopped = threading.Event()
        self._sock: socket.socket | None = None
        self._sock_path: Path | None = None
        self._pid = os.getpid()

    # -- waiting side ------------------------------------------------------------------

    def subscribe(self, item_id: str, event: Any = None) -> Any:
        """Register ``event`` (anything with a thread-safe ``set()``; default a new
        ``threading.Event``) to be set when ``item_id`` changes."""
        self._ensure_listening()
        event = threading.Event() if event is None else event
        with self._lock:
            self._waiters.setdefault(item_id, set()).add(event)
        return event

    def unsubscribe(self, item_id: str, event: Any) -> None:
        with self._lock:
            events = self._waiters.get(item_id)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._waiters[item_id]

    def _wake(self, item_id: str) -> None:
        with self._lock:
            events = list(self._waiters.get(item_id, ()))
        for event in events:
            event.set()

    def _ensure_listening(self) -> None:
        if os.getpid() != self._pid:  # forked: the parent's thread did not come along
            self._thread, self._pid = None, os.getpid()
            self._started.clear()
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                target = self._run_sqlite if self.directory is not None else self._run_pg
                self._thread = threading.Thread(target=target, name="proctor-wake", daemon=True)
                self._thread.start()
        self._started.wait(5)

    def _run_sqlite(self) -> None:
        assert self.directory is not None
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{os.getpid()}-{os.urandom(6).hex()}"
        path = self.directory / name
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(_address(name))
        path.touch()
        sock.settimeout(0.5)
        self._sock, self._sock_path = sock, path
        self._started.set()
        try:
            while not self._stopped.is_set():
                try:
                    data = sock.recv(256)
                except TimeoutError:
                    continue
                self._wake(data.decode(errors="replace"))
        finally:
            sock.close()
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _run_pg(self) -> None:
        import psycopg  # only a PostgreSQL store gets here; it has checked the driver is there

        assert self.pg_conninfo is not None
        while not self._stopped.is_set():
            try:
                with psycopg.connect(self.pg_conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._started.set()
                    while not self._stopped.is_set():
                        for note in conn.notifies(timeout=0.5):
                            self._wake(note.payload)
            except psycopg.OperationalError:
                self._started.set()  # waiters fall back to re-reading; retry the connection
                self._stopped.wait(1.0)

    # -- deciding side -----------------------------------------------------------------

    def notify_in_tx(self, cursor: Any, item_id: str) -> None:
        """PostgreSQL: queue the notification in the deciding transaction."""
        if self.dialect == "postgresql":
            cursor.execute("SELECT pg_notify(%s, %s)", (CHANNEL, item_id))

    def notify_after_commit(self, item_id: str) -> None:
        """SQLite: tell every waiting process on this database; drop sockets of dead ones."""
        if self.directory is None or not self.directory.exists():
            return
        payload = item_id.encode()
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
            sender.setblocking(False)
            for path in self.directory.iterdir():
                try:
                    sender.sendto(payload, _address(path.name))
                except (ConnectionRefusedError, FileNotFoundError):
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                except BlockingIOError:
                    continue  # its buffer is full: it will re-read the item anyway

    def close(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None


def _address(name: str) -> bytes:
    return b"\0proctor-wake-" + name.encode()
