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

Held = tuple[str, str]  # ("item", item id) for an approved item, ("call", call id) for a call


class Heartbeat:
    def __init__(self, renew: Callable[[Held, str], bool]) -> None:
        self._renew = renew
        self._held: dict[Held, tuple[str, float]] = {}  # (kind, id) -> (token, lease seconds)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._stopped = False

    @contextmanager
    def holding(self, held: Held, token: str, lease_seconds: float) -> Iterator[None]:
        """Keep the lease of ``held`` (``("item", id)`` or ``("call", id)``) alive for the
        length of the block."""
        with self._lock:
            self._held[held] = (token, lease_seconds)
            if self._thread is None or not self._thread.is_alive():
                self._stopped = False
                self._thread = threading.Thread(
                    target=self._run, name="proctor-lease-heartbeat", daemon=True
                )
                self._thread.start()
            elif len(self._held) == 1:
                self._wake.notify()  # it was idling: the period is this lease's now
        try:
            yield
        finally:
            with self._lock:
                self._held.pop(held, None)

    def _run(self) -> None:
        with self._lock:
            while not self._stopped:
                if not self._held:
                    self._wake.wait(5.0)
                    if not self._held:
                        self._thread = None  # idle: the next claim starts a new thread
                        return
                    continue
                period = min(lease for _, lease in self._held.values()) / 3
                self._wake.wait(period)
                due = dict(self._held)
                self._lock.release()
                try:
                    for held, (token, _) in due.items():
                        self._beat(held, token)
                finally:
                    self._lock.acquire()

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
