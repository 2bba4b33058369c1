"""Grants: the right to run an approved action once, held under a lease.

A runner claims an approved item with a secret claim token of its own making (only its
SHA-256 is stored) and gets a lease of ``lease_seconds``, which it renews while the tool
runs. Only a caller showing that token may renew the lease or record the outcome, so no
one else can finish, forge or replay another runner's call. A lease that runs out makes
the item ``in_doubt`` wherever its runner was: the action may or may not have happened,
and only a human who has checked may let it run again.

    approved --claim--> executing --outcome--> done | failed
                            |  lease expired, or the runner certainly died
                            v
                         in_doubt --outcome from the token's holder--> done | failed
                                  --approve(confirm_not_run)--> approved
"""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass
from typing import Any

from .. import _clock
from .._canonical import canonical
from .._errors import Conflict, Forbidden
from .._values import storable_json
from .._values import text as storable_text
from ..controls import load as load_controls
from ..store import Store, WriteTx
from .rows import load, log, update

DEFAULT_LEASE_SECONDS = 30.0


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# -- who runs it -----------------------------------------------------------------------------


def _machine() -> str:
    """This kernel boot and PID namespace: the scope in which a pid means one process.

    A hostname is not enough (two hosts, or two containers, may share one), and a pid seen
    from another namespace means nothing here.
    """
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            boot = fh.read().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return "unknown"
    return hashlib.sha256(f"{boot}|{namespace}".encode()).hexdigest()[:12]


_MACHINE = _machine()


def owner_id() -> str:
    """host:pid:start-time:machine:nonce of one claim attempt, for people and for the one
    shortcut a lease allows: a runner on this machine whose process is gone is dead."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_ticks(pid)}:{_MACHINE}:{os.urandom(4).hex()}"


def _start_ticks(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return "?"


def certainly_dead(owner: str | None) -> bool:
    """True only when the owner ran in this boot and PID namespace and its process is gone
    (or its pid now belongs to another process). Anywhere else only the lease can tell."""
    if not owner:
        return False
    parts = owner.split(":")
    if len(parts) != 5 or parts[3] != _MACHINE or _MACHINE == "unknown":
        return False
    pid_text, ticks = parts[1], parts[2]
    if not pid_text.isdigit():
        return False
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return ticks != "?" and _start_ticks(pid) != ticks


# -- the grant's life --------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """What ``claim`` found: run it now, someone else is, or it already ran."""

    state: str  # claimed | busy | done | failed | pending | rejected | expired | in_doubt | frozen
    item: dict[str, Any]
    lease_seconds: float


class Grants:
    """Claims, leases and outcomes of approved items, each in its own write transaction."""

    def __init__(self, store: Store, lease_seconds: float) -> None:
        if not lease_seconds > 0:
            raise ValueError("the lease must be a positive number of seconds")
        self.store = store
        self.lease_seconds = lease_seconds

    def claim(
        self, item_id: str, original_digest: str | None, owner: str | None, token: str
    ) -> Claim:
        """Atomically take the right to run an approved action, or learn why not.

        The same token asking again (a retried request) gets its claim back, renewed.
        """
        digest = token_hash(token)
        with self.store.write() as tx:
            item = load(tx, item_id)
            status = item["status"]
            now = _clock.now()
            if status == "executing":
                if item["claim_token"] == digest:
                    self._renew(tx, item_id, digest, now)
                    return Claim("claimed", item, self.lease_seconds)
                why = self.lapsed(item, now)
                if why is not None:
                    self.to_in_doubt(tx, item, why)
                    return Claim("in_doubt", item, self.lease_seconds)
                return Claim("busy", item, self.lease_seconds)
            if status != "approved":
                return Claim(status, item, self.lease_seconds)
            if load_controls(tx).kill_reason(item["agent"]) is not None:
                return Claim("frozen", item, self.lease_seconds)  # waits for a revive
            if item["grant_expires_at"] is not None and item["grant_expires_at"] < now:
                update(tx, item_id, status="expired")
                log(tx, "grant.expire", item)
                return Claim("expired", item, self.lease_seconds)
            if (
                original_digest is not None
                and item["kind"] != "choice"
                and original_digest != item["args_digest"]
            ):
                raise Forbidden("these arguments are not the ones that were approved")
            owner = (owner or owner_id())[:200]
            update(
                tx,
                item_id,
                status="executing",
                claim_owner=owner,
                claimed_at=now,
                claim_token=digest,
                lease_expires_at=now + self.lease_seconds,
            )
            log(
                tx,
                "grant.claim",
                item,
                owner=owner,
                grant_digest=item["grant_digest"],
                lease_s=self.lease_seconds,
            )
            item["status"] = "executing"
            return Claim("claimed", item, self.lease_seconds)

    def renew(self, item_id: str, token: str) -> bool:
        """Extend the lease of a claim this token holds; False when it is no longer held
        (its lease ran out and the item went in doubt, or a human settled it)."""
        with self.store.write() as tx:
            return self._renew(tx, item_id, token_hash(token), _clock.now())

    def _renew(self, tx: WriteTx, item_id: str, digest: str, now: float) -> bool:
        cur = tx.sql(
            "UPDATE proctor_review_items SET lease_expires_at = ?"
            " WHERE id = ? AND status = 'executing' AND claim_token = ?",
            (now + self.lease_seconds, item_id, digest),
        )
        return bool(cur.rowcount == 1)

    def lapsed(self, item: dict[str, Any], now: float) -> str | None:
        """Why an executing item's runner can no longer be trusted to finish, if it can't."""
        expires = item.get("lease_expires_at")
        if expires is None:  # claimed before leases existed
            expires = (item.get("claimed_at") or 0.0) + self.lease_seconds
        if expires < now:
            return f"its lease expired {now - expires:.1f} s ago"
        if certainly_dead(item.get("claim_owner")):
            return "its runner's process is gone"
        return None

    def to_in_doubt(self, tx: WriteTx, item: dict[str, Any], why: str) -> None:
        update(tx, item["id"], status="in_doubt")
        log(tx, "grant.in_doubt", item, owner=item["claim_owner"], why=why)

    def finish(
        self,
        tx: WriteTx,
        item_id: str,
        token: str | None,
        result: Any,
        error: BaseException | None,
        max_bytes: int,
    ) -> bool:
        """Record the outcome on the item, in the transaction that logs the outcome.

        Only the claim's holder may: a wrong or missing token is ``Forbidden``, an item not
        running is ``Conflict``. Returns False when this holder's outcome is already
        recorded (a retried write whose first attempt committed): write nothing more.
        """
        item = load(tx, item_id)
        if token is None or item["claim_token"] != token_hash(token):
            raise Forbidden(
                f"only the runner holding item {item_id}'s claim may record its outcome"
            )
        status = item["status"]
        if status in ("done", "failed"):
            return False
        if status not in ("executing", "in_doubt"):
            raise Conflict(f"item {item_id} is {status}: no outcome can be recorded for it")
        fields: dict[str, Any] = {"lease_expires_at": None}
        if error is None:
            data = storable_json(result)  # it has happened: stored whatever it holds
            text = (
                data.decode()
                if len(data) <= max_bytes
                else canonical({"_omitted": f"{len(data)} bytes"}).decode()
            )
            fields.update(status="done", result=text)
        else:
            kind = getattr(error, "error_type", None) or type(error).__name__  # remote reports
            fields.update(status="failed", result_error=storable_text(f"{kind}: {error}")[:1000])
        update(tx, item_id, **fields)
        if status == "in_doubt":  # its runner was alive after all: its word settles it
            log(tx, "grant.settled", item, by="runner", outcome=fields["status"])
        tx.wake(item_id)
        return True

    def expire_leases(self, tx: WriteTx, item_id: str | None, now: float) -> list[str]:
        """Move executing items whose runner lapsed to in_doubt (the sweeper calls this)."""
        changed = []
        rows = tx.sql(
            "SELECT id, claim_owner, claimed_at, lease_expires_at FROM proctor_review_items"
            " WHERE status = 'executing'"
        ).fetchall()
        for iid, owner, claimed_at, lease in rows:
            if item_id is not None and iid != item_id:
                continue
            probe = {"claim_owner": owner, "claimed_at": claimed_at, "lease_expires_at": lease}
            why = self.lapsed(probe, now)
            if why is not None:
                self.to_in_doubt(tx, load(tx, iid), why)
                changed.append(iid)
        return changed
