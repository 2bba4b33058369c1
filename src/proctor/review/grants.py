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

from dataclasses import dataclass
from typing import Any

from .. import _clock
from .._canonical import canonical
from .._errors import Conflict, Forbidden
from .._values import storable_json
from .._values import text as storable_text
from ..controls import load as load_controls
from ..execution import holds
from ..execution.leases import certainly_dead, owner_id, token_hash
from ..store import Store, WriteTx
from .rows import load, log, update

# -- the grant's life --------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """What ``claim`` found: run it now, someone else is, or it already ran."""

    # claimed | busy | done | failed | pending | rejected | expired | in_doubt | frozen
    # | held (other approvals in its run are pending) | refused (its run was rejected)
    state: str
    item: dict[str, Any]
    lease_seconds: float
    held_by: tuple[str, ...] = ()
    reason: str | None = None


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
            hold = holds.check(
                tx,
                holds.lineage(tx, item["run_id"]),
                exclude=item_id,
                opened_at=item["created_at"],
            )
            if hold is not None and hold.refused_by is not None:
                return Claim(
                    "refused",
                    item,
                    self.lease_seconds,
                    reason=f"its run depends on review item {hold.refused_by}, which a"
                    f" reviewer rejected: {hold.reason}",
                )
            if hold is not None:
                return Claim("held", item, self.lease_seconds, held_by=hold.pending)
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
        if item.get("call_id"):  # the call this item decided is finished with it
            tx.sql(
                "UPDATE proctor_calls SET status = ?, result = ?, result_error = ?, updated_at = ?"
                " WHERE id = ?",
                (
                    fields["status"],
                    fields.get("result"),
                    fields.get("result_error"),
                    _clock.now(),
                    item["call_id"],
                ),
            )
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
