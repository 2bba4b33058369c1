"""The wall clock every recorded time is read from.

Monotonic clocks still time waits and durations; this one stamps records, items, leases
and windows. A simulation (the demo's backdated history) may run on a clock of its own for
a while; nothing else sets it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

now: Callable[[], float] = time.time
_lock = threading.Lock()


@contextmanager
def simulated(clock: Callable[[], float]) -> Iterator[None]:
    """Read recorded times from ``clock`` for the length of the block (one at a time)."""
    global now
    with _lock:
        previous, now = now, clock
        try:
            yield
        finally:
            now = previous
