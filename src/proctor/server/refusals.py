"""Refused requests: who is let in, and what the log says about those who are not.

A caller with a valid token who is refused (403), or whose real token has expired, gets a
full ``access.denied`` record each time. Requests without a valid token are counted in
memory per client address and window instead, and written as one ``access.denied`` record
per address and window: guessing tokens cannot grow the log, nor hold the write lock. An
address with more than ``refusal_limit`` such refusals in its window gets 429 until the
window ends, decided without the database, unless it presents a token this server has
already accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from .._errors import StoreError, TooManyRequests
from ..store import Store
from .auth import Principal, TokenVerifier, Unauthorized

MAX_SOURCES = 10_000  # addresses counted at once; beyond, refusals share one overflow tally
MAX_PATHS = 5  # sample paths kept per address and window
OVERFLOW = "(other addresses)"
CHUNK = 500  # records per write transaction, so a flush holds the write lock only briefly


@dataclass
class _Tally:
    started: float
    first: float = 0.0
    last: float = 0.0
    refused: int = 0  # every refusal in the window: what the limit counts
    statuses: Counter[int] = field(default_factory=Counter)  # those not logged in full
    paths: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(self.statuses.values())


class RefusalTally:
    """Refusals of callers without a valid token, per client address and window, in
    memory and bounded. Safe to call from any thread."""

    def __init__(self, window: float, limit: int, max_sources: int = MAX_SOURCES) -> None:
        self.window = window
        self.limit = limit
        self.max_sources = max_sources
        self._open: dict[str, _Tally] = {}
        # Records to write: every open window's, and as many again not yet written.
        self._closed: deque[dict[str, Any]] = deque(maxlen=2 * (max_sources + 1))
        self._lock = threading.Lock()

    def check(self, source: str, now: float | None = None) -> None:
        """Raise ``TooManyRequests`` if ``source`` is over its limit in this window."""
        now = time.time() if now is None else now
        with self._lock:
            tally = self._current(source, now)
            if tally is None or tally.refused < self.limit:
                return
            wait = max(1, math.ceil(tally.started + self.window - now))
        raise TooManyRequests(
            f"too many requests without a valid token from {source}; retry in {wait} s",
            retry_after=wait,
        )

    def note(
        self, source: str, what: str, status: int, *, logged: bool = False, now: float | None = None
    ) -> None:
        """Count one refusal. ``logged``: it has a full record of its own, so it counts
        toward the limit but not in the window's record."""
        now = time.time() if now is None else now
        with self._lock:
            tally = self._current(source, now)
            if tally is None and len(self._open) >= self.max_sources:
                source = OVERFLOW  # counted and logged, never limited: it is many addresses
                tally = self._current(source, now)
            if tally is None:
                tally = self._open[source] = _Tally(started=now)
            tally.refused += 1
            if logged:
                return
            if not tally.statuses:
                tally.first = now
            tally.last = now
            tally.statuses[status] += 1
            if what not in tally.paths and len(tally.paths) < MAX_PATHS:
                tally.paths.append(what)

    def due(self, now: float | None = None, *, everything: bool = False) -> list[dict[str, Any]]:
        """Take the records of the windows that have closed (of all, with ``everything``)."""
        now = time.time() if now is None else now
        with self._lock:
            for source in [
                s for s, t in self._open.items() if everything or now >= t.started + self.window
            ]:
                self._close(source)
            bodies = list(self._closed)
            self._closed.clear()
        return bodies

    def put_back(self, bodies: list[dict[str, Any]]) -> None:
        """Records that could not be written: the next flush tries again (bounded)."""
        with self._lock:
            self._closed.extendleft(reversed(bodies[: self.max_sources + 1]))

    def _current(self, source: str, now: float) -> _Tally | None:
        tally = self._open.get(source)
        if tally is not None and now >= tally.started + self.window:
            self._close(source)
            return None
        return tally

    def _close(self, source: str) -> None:
        tally = self._open.pop(source)
        if not tally.count:
            return
        self._closed.append(
            {
                "reason": f"{tally.count} request(s) without a valid token refused",
                "client": source,
                "count": tally.count,
                "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
                "first": tally.first,
                "last": tally.last,
                "paths": tally.paths,
                "window": self.window,
                "token_id": None,
                "name": None,
                "role": None,
            }
        )


def write_due(store: Store, tally: RefusalTally, *, everything: bool = False) -> int:
    """Append one record per closed window (all windows with ``everything``); returns how
    many were written. Those not written are put back for the next try."""
    bodies = tally.due(everything=everything)
    for start in range(0, len(bodies), CHUNK):
        try:
            with store.write() as tx:
                for body in bodies[start : start + CHUNK]:
                    tx.append("access.denied", body)
        except StoreError:
            tally.put_back(bodies[start:])
            raise
    return len(bodies)


async def flushing(store: Store, tally: RefusalTally) -> None:
    """Write each window's record soon after it closes (a background task)."""
    every = min(1.0, tally.window / 4)
    while True:
        await asyncio.sleep(every)
        with contextlib.suppress(StoreError):  # the database is back next round
            await asyncio.to_thread(write_due, store, tally)


def source_of(request: Request) -> str:
    """The client address (as the server sees it: a proxy in front is one address)."""
    return request.client.host if request.client else "unknown"


async def authenticate(request: Request, token: str | None) -> Principal:
    """The caller holding ``token``; ``Unauthorized`` without a valid one, or
    ``TooManyRequests`` when its address is over its limit and the token was never
    accepted here (no database lookup for guesses)."""
    verifier: TokenVerifier = request.app.state.verifier
    if token:
        who = verifier.cached(token)
        if who is not None:
            request.state.principal = who
            return who
    if not (token and verifier.accepted(token)):
        request.app.state.refusals.check(source_of(request))
    if not token:
        raise Unauthorized("an API token is required: Authorization: Bearer <token>")
    who = await asyncio.to_thread(verifier.verify, token)
    request.state.principal = who
    return who


async def record(request: Request, status: int, exc: Exception) -> None:
    """Log a refusal: in full for an authenticated caller or an expired token, else in the
    address's tally."""
    who: Principal | None = getattr(request.state, "principal", None)
    token_id = exc.token_id if isinstance(exc, Unauthorized) else None
    if who is None:
        request.app.state.refusals.note(
            source_of(request),
            f"{request.method} {request.url.path}"[:300],
            status,
            logged=token_id is not None,
        )
        if token_id is None:
            return
    body = _full(request, status, str(exc), who, token_id)
    await asyncio.to_thread(_append, request.app.state.px.store, body)


def record_now(request: Request, status: int, reason: str) -> None:
    """Log, in full and from a worker thread, a refusal an endpoint makes itself (a 409 on
    an outcome the caller may not record, say)."""
    who: Principal | None = getattr(request.state, "principal", None)
    _append(request.app.state.px.store, _full(request, status, reason, who, None))


def _full(
    request: Request, status: int, reason: str, who: Principal | None, token_id: str | None
) -> dict[str, Any]:
    return {
        "status": status,
        "method": request.method,
        "path": request.url.path,
        "reason": reason[:500],
        "client": source_of(request),
        "token_id": who.token_id if who else token_id,
        "name": who.name if who else None,
        "role": who.role if who else None,
        "at": time.time(),
    }


def _append(store: Store, body: dict[str, Any]) -> None:
    with contextlib.suppress(StoreError), store.write() as tx:
        tx.append("access.denied", body)
