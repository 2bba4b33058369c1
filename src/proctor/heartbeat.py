"""Renew the leases of the claims this process holds while their tools run.

One daemon thread per Proctor, started at the first claim, renews every held lease each
third of its length. If renewing fails (the store or the server is unreachable) it keeps
trying; should the lease run out meanwhile, the item goes in doubt, which is the safe side:
a human checks before anything runs again. A runner whose lease lapsed still records its
outcome with its claim token, which settles the doubt, unless a human has re-approved the
item meanwhile.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ._errors import ProctorError

IDLE_SECONDS = 30.0  # a thread with nothing to renew for this long stops
Held = tuple[str, str]  # ("item", item id) for an approved item, ("call", call id) for a call


class Heartbeat:
    def __init__(self, renew: Callable[[Held, str], bool]) -> None:
        self._renew = renew
        self._held: dict[Held, tuple[str, float]] = {}  # (kind, id) -> (token, lease seconds)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._period = 10.0

    @contextmanager
    def holding(self, held: Held, token: str, lease_seconds: float) -> Iterator[None]:
        """Keep the lease of ``held`` (``("item", id)`` or ``("call", id)``) alive for the
        length of the block."""
        self.hold(held, token, lease_seconds)
        try:
            yield
        finally:
            self.release(held)

    def hold(self, held: Held, token: str, lease_seconds: float) -> None:
        """Start renewing ``held``; ``release`` stops. Cheap on the hot path: a fresh
        claim's lease outlasts the thread's next round unless it is shorter than the
        others, and only then is the thread woken to take up the shorter period."""
        with self._lock:
            self._held[held] = (token, lease_seconds)
            if self._thread is None:
                self._stopped = False
                self._period = lease_seconds / 3
                self._thread = threading.Thread(
                    target=self._run, name="proctor-lease-heartbeat", daemon=True
                )
                self._thread.start()
            elif lease_seconds / 3 < self._period:
                self._period = lease_seconds / 3
                self._wake.notify()

    def release(self, held: Held) -> None:
        with self._lock:
            self._held.pop(held, None)

    def _run(self) -> None:
        idle = 0.0
        with self._lock:
            while not self._stopped:
                self._wake.wait(self._period)
                if self._stopped:
                    break
                if not self._held:
                    idle += self._period
                    if idle >= IDLE_SECONDS:
                        self._thread = None  # idle: the next claim starts a new thread
                        return
                    continue
                idle = 0.0
                self._period = min(lease for _, lease in self._held.values()) / 3
                due = dict(self._held)
                self._lock.release()
                try:
                    for held, (token, _) in due.items():
                        self._beat(held, token)
                finally:
                    self._lock.acquire()
            self._thread = None

    def _beat(self, held: Held, token: str) -> None:
        try:
            self._renew(held, token)
        except ProctorError:
            return  # unreachable for now: try again next round; the lease is the backstop

    def close(self) -> None:
        with self._lock:
            self._stopped = True
            self._wake.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=2)
