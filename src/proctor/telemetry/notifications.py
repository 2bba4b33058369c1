"""Notifications: an outbox in the database, delivered through apprise with retries.

Alerts and SLA breaches write rows here in the same transaction as their log record, so a
crash loses nothing and a decision never waits on a mail server or a chat service: the
server's delivery loop (or ``proctor alerts check``) sends them later. Each row is one URL
of a target; a failed attempt is retried with exponential backoff (5 s doubling, at most
15 min apart) up to ``MAX_ATTEMPTS``, then marked ``failed`` and logged. A row is leased
while it is being sent, so two servers on one database do not send it twice; a server that
dies mid-send leaves the lease to expire and the row is sent again (at least once).

URLs are apprise URLs (``slack://``, ``mailto://``, ``json://``, ``https://hooks...``) and
may name environment variables as ``${VAR}``, expanded when sent: secrets stay out of the
policy and the database. Rows whose source starts with ``webhook:`` are the policy's
signed webhooks (``webhooks.py``): posted with httpx, not apprise, and retried alike.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import random
import re
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from .. import _clock
from .._extras import missing
from ..store import Store, WriteTx
from ..store.tables import notifications
from . import webhooks

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
LEASE_SECONDS = 120.0
FIRST_RETRY_SECONDS = 5.0
MAX_RETRY_SECONDS = 900.0
SEND_THREADS = 4
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

Sender = Callable[[str, str, str, str], "str | None"]
"""(url, severity, title, body) -> None when delivered, else why not."""
Poster = Callable[[str, str], "str | None"]
"""(url, stored body) -> None when a webhook's receiver took it, else why not."""


class MissingVariable(LookupError):
    pass


def expand(url: str, env: dict[str, str] | None = None) -> str:
    """``${VAR}`` from the environment; a missing variable is an error, not an empty string."""
    env = os.environ if env is None else env  # type: ignore[assignment]
    assert env is not None

    def value(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in env:
            raise MissingVariable(f"environment variable {name} is not set")
        return env[name]

    return _VAR.sub(value, url)


def redact(url: str) -> str:
    """A URL fit for logs and pages: scheme and host, nothing that may be a credential."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].split("?", 1)[0].rsplit("@", 1)[-1]
    return f"{scheme}://{host}/…" if rest else url


def enqueue(
    tx: WriteTx,
    *,
    source: str,
    names: Iterable[str],
    targets: dict[str, list[str]],
    severity: str,
    title: str,
    body: str,
) -> int:
    """Queue one message for every URL of every named target, inside the caller's
    transaction; returns how many rows were written."""
    now = _clock.now()
    count = 0
    for name in dict.fromkeys(names):
        for url in targets.get(name, []):
            tx.sql(
                "INSERT INTO proctor_notifications (id, created_at, source, target, url,"
                " severity, title, body, status, attempts, next_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?)",
                (os.urandom(16).hex(), now, source, name, url, severity, title, body, now),
            )
            count += 1
    return count


def backoff(attempts: int) -> float:
    """Seconds before attempt ``attempts + 1``, with jitter so retries do not stampede."""
    base = min(MAX_RETRY_SECONDS, FIRST_RETRY_SECONDS * float(1 << max(0, attempts - 1)))
    return base * random.uniform(0.8, 1.2)


@dataclass(frozen=True)
class Delivery:
    sent: int = 0
    retrying: int = 0
    failed: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"sent": self.sent, "retrying": self.retrying, "failed": self.failed}


def send_apprise(url: str, severity: str, title: str, body: str) -> str | None:
    try:
        import apprise
    except ImportError as exc:
        raise missing("notify", exc) from exc

    try:
        target = expand(url)
    except MissingVariable as exc:
        return str(exc)
    kind = {
        "critical": apprise.NotifyType.FAILURE,
        "warning": apprise.NotifyType.WARNING,
        "resolved": apprise.NotifyType.SUCCESS,
    }.get(severity, apprise.NotifyType.INFO)
    client = apprise.Apprise()
    if not client.add(target):
        return f"not a URL apprise can send to: {redact(url)}"
    with apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as output:  # type: ignore[no-untyped-call]
        ok = client.notify(title=title, body=body, notify_type=kind)
        lines = [line.strip() for line in output.getvalue().splitlines() if line.strip()]
    if ok:
        return None
    return (lines[-1] if lines else "the service refused the message")[:500]


def deliver_due(
    store: Store,
    *,
    now: float | None = None,
    limit: int = 50,
    send: Sender = send_apprise,
    post: Poster = webhooks.send,
) -> Delivery:
    """Send what is due (leasing it first), then record each result: webhooks through
    ``post``, everything else through ``send``."""
    now = _clock.now() if now is None else now
    started = time.monotonic()
    n = notifications.c
    due = [n.status == "pending", n.next_at <= now]
    where = "status = 'pending' AND next_at <= ?"
    params: tuple[Any, ...] = (now,)
    if send is send_apprise and importlib.util.find_spec("apprise") is None:
        # Apprise's rows are kept pending, sent once the extra is installed; webhooks
        # need no apprise and go now.
        with store.read() as conn:
            waiting = conn.execute(
                sa.select(n.id).where(*due, n.source.not_like(webhooks.SOURCE + "%")).limit(1)
            ).first()
        if waiting is not None:
            _warn_once(
                "notifications wait in the outbox: pip install 'proctor[notify]' to send them"
            )
        due.append(n.source.like(webhooks.SOURCE + "%"))
        where += " AND source LIKE ?"
        params += (webhooks.SOURCE + "%",)
    with store.read() as conn:  # a cheap look first: most rounds find nothing to send
        if conn.execute(sa.select(n.id).where(*due).limit(1)).first() is None:
            return Delivery()
    with store.write() as tx:
        rows = tx.sql(
            "SELECT id, url, severity, title, body, attempts, target, source"
            f" FROM proctor_notifications WHERE {where}"
            " ORDER BY next_at LIMIT ?",
            (*params, limit),
        ).fetchall()
        for row in rows:
            tx.sql(
                "UPDATE proctor_notifications SET attempts = attempts + 1, next_at = ?"
                " WHERE id = ?",
                (now + LEASE_SECONDS, row[0]),
            )
    if not rows:
        return Delivery()
    with ThreadPoolExecutor(min(SEND_THREADS, len(rows)), "proctor-notify") as pool:
        errors = list(pool.map(lambda r: _attempt(send, post, r), rows))
    sent = retrying = failed = 0
    done = now + (time.monotonic() - started)  # on the caller's clock
    with store.write() as tx:
        for row, error in zip(rows, errors, strict=True):
            attempts = row[5] + 1
            if error is None:
                sent += 1
                tx.sql(
                    "UPDATE proctor_notifications SET status = 'sent', sent_at = ?,"
                    " last_error = NULL WHERE id = ?",
                    (done, row[0]),
                )
            elif attempts >= MAX_ATTEMPTS:
                failed += 1
                tx.sql(
                    "UPDATE proctor_notifications SET status = 'failed', failures = failures + 1,"
                    " last_error = ?"
                    " WHERE id = ?",
                    (error, row[0]),
                )
                tx.append(
                    "notification.failed",
                    {
                        "notification_id": row[0],
                        "target": row[6],
                        "source": row[7],
                        "attempts": attempts,
                        "error": error,
                    },
                )
            else:
                retrying += 1
                tx.sql(
                    "UPDATE proctor_notifications SET next_at = ?, last_error = ?,"
                    " failures = failures + 1 WHERE id = ?",
                    (done + backoff(attempts), error, row[0]),
                )
    if failed or retrying:
        log.warning("notifications: %d sent, %d to retry, %d failed", sent, retrying, failed)
    return Delivery(sent, retrying, failed)


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        log.warning(message)


def _attempt(send: Sender, post: Poster, row: Any) -> str | None:
    try:
        if str(row[7]).startswith(webhooks.SOURCE):
            return post(row[1], row[4])
        return send(row[1], row[2], row[3], row[4])
    except Exception as exc:  # noqa: BLE001 - a plugin's failure is this attempt's failure
        return f"{type(exc).__name__}: {exc}"[:500]


def send_test(urls: list[str], name: str, send: Sender = send_apprise) -> list[str | None]:
    """Send a test message to every URL of a target now; the error of each, or None."""
    return [
        send(
            url,
            "info",
            f"Proctor test notification for '{name}'",
            "If you can read this, Proctor can reach this target.",
        )
        for url in urls
    ]


def recent(store: Store, *, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """The outbox, newest first, with URLs redacted."""
    query = sa.select(notifications).order_by(notifications.c.created_at.desc()).limit(limit)
    if status is not None:
        query = query.where(notifications.c.status == status)
    with store.read() as conn:
        rows = conn.execute(query).mappings().all()
    return [{**r, "url": redact(r["url"])} for r in rows]
