"""A small bounded pool of writer connections.

Writes bypass SQLAlchemy's pool on purpose (the hot path takes a raw DBAPI cursor), so the
bound lives here: at most ``size`` connections, each held for one transaction only, most
recently used first so the warm ones stay in use. A thread that finds every connection busy
waits up to ``timeout`` and then fails closed with a ``StoreError``.

Taking and returning an idle connection are single list operations, atomic under the
interpreter lock; the lock and the condition are used only to open, close or wait.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from .._errors import StoreError

_POOLS: weakref.WeakSet[WriterPool] = weakref.WeakSet()


@dataclass(eq=False, slots=True)
class Writer:
    """One pooled connection: SQLAlchemy's proxy (to close it), the driver's connection
    and a cursor kept open across transactions."""

    proxy: Any
    raw: Any
    cursor: Any
    reused: bool = field(default=False)


class WriterPool:
    def __init__(
        self,
        connect: Callable[[], Writer],
        size: int,
        timeout: float,
        close_errors: tuple[type[BaseException], ...],
        busy: Callable[[str], Exception] = StoreError,
    ) -> None:
        if size < 1:
            raise ValueError("a pool needs at least one connection")
        self._connect = connect
        self.size = size
        self.timeout = timeout
        self._close_errors = close_errors
        self._busy = busy
        self._forget()
        _POOLS.add(self)

    def _forget(self) -> None:
        self._idle: list[Writer] = []
        self._open = 0
        self._waiting = 0
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)

    @property
    def open(self) -> int:
        """Connections open now, idle or in use."""
        return self._open

    def acquire(self) -> Writer:
        try:
            writer = self._idle.pop()
        except IndexError:
            return self._acquire_slow()
        writer.reused = True
        return writer

    def _acquire_slow(self) -> Writer:
        deadline = time.monotonic() + self.timeout
        with self._lock:
            self._waiting += 1
            try:
                while True:
                    if self._idle:  # re-checked after counting ourselves as waiting
                        writer = self._idle.pop()
                        writer.reused = True
                        return writer
                    if self._open < self.size:
                        self._open += 1
                        break
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise self._busy(
                            f"all {self.size} database connections of this process stayed"
                            f" busy for {self.timeout:g} s (PROCTOR_POOL_SIZE bounds them)"
                        )
                    self._cond.wait(left)
            finally:
                self._waiting -= 1
        try:  # connecting is slow: outside the lock
            return self._connect()
        except BaseException:
            self._closed_one()
            raise

    def release(self, writer: Writer) -> None:
        self._idle.append(writer)
        if self._waiting:  # a Condition's notify costs a microsecond even with no waiter
            with self._lock:
                self._cond.notify()

    def discard(self, writer: Writer) -> None:
        """Close a connection in an unknown state; the next acquire opens a fresh one."""
        self._closed_one()
        with suppress(*self._close_errors):
            writer.proxy.invalidate()

    def _closed_one(self) -> None:
        with self._lock:
            self._open -= 1
            self._cond.notify()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
            self._open -= len(idle)
        for writer in idle:
            with suppress(*self._close_errors):
                writer.proxy.close()


def _after_fork_in_child() -> None:
    """A child must not touch its parent's sockets (closing one would end the parent's
    session): every pool forgets them and starts empty, with fresh locks (the parent's may
    have been held by one of its threads at the fork)."""
    for pool in list(_POOLS):
        pool._forget()


os.register_at_fork(after_in_child=_after_fork_in_child)
