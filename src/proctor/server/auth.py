"""API tokens and what each role may do.

A token is ``pxt_<id>_<secret>``; only SHA-256(secret) is stored, and the whole token is
shown once, at creation. Secrets are 32 random bytes, so a fast hash is enough (a slow
password hash protects guessable passwords, which these are not). A token may carry an
expiry; past it, it is refused like a revoked one, but the refusal says why.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa

from .._errors import Forbidden, InvalidRequest, NotFound, ProctorError
from ..store import Store
from ..store.tables import tokens

ROLES = ("admin", "policy_author", "reviewer", "sme", "agent", "viewer")
CACHE_SECONDS = 2.0  # a revoked token stops working within this long in every server process
MAX_EXPIRY_SECONDS = 10 * 366 * 86400.0  # ten years; "never" is no expiry at all
UNKNOWN = "the API token is unknown or revoked"

_READERS = frozenset({"admin", "policy_author", "viewer", "reviewer", "sme"})

PERMISSIONS: dict[str, frozenset[str]] = {
    # Send actions, outcomes, refusals and choices, end runs, claim grants: as its agents.
    "act": frozenset({"agent", "admin"}),
    # Approve, reject, edit, escalate, choose: in its queues.
    "decide": frozenset({"reviewer", "sme", "admin"}),
    "apply_policy": frozenset({"policy_author", "admin"}),
    # Policies, agents, the decision log, KPIs, alerts, notifications, problems, breakers; every
    # console page (agents have no console: their tokens are for the API).
    "read": _READERS,
    # Verify and export the whole chain; the console verifies it on demand (audit page).
    "verify": frozenset({"admin", "policy_author", "viewer"}),
    # Tokens, checking alerts on demand, closing a circuit breaker by hand.
    "manage": frozenset({"admin"}),
}
"""What each role may do: the one table the API's endpoints and the console's pages ask."""


class Unauthorized(ProctorError):
    """No valid token (HTTP 401). ``token_id`` names a real token that was refused (it
    expired), so the refusal is logged in full rather than counted with the guesses."""

    def __init__(self, message: str, *, token_id: str | None = None) -> None:
        super().__init__(message)
        self.token_id = token_id


def require(who: Principal, permission: str) -> None:
    """Raise ``Forbidden`` unless the caller's role has ``permission``."""
    if not who.may(permission):
        roles = ", ".join(sorted(PERMISSIONS[permission]))
        raise Forbidden(f"role '{who.role}' may not do this (needs one of: {roles})")


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's name, role and the queues/agents it is limited to."""

    token_id: str
    name: str
    role: str
    queues: frozenset[str] | None  # None: every queue
    agents: frozenset[str] | None  # None: every agent
    expires_at: float | None = None  # Unix time; None: never

    def may(self, permission: str) -> bool:
        return self.role in PERMISSIONS[permission]

    def acts_as(self, agent: str) -> bool:
        if self.role == "admin":
            return True
        return self.may("act") and (self.agents is None or agent in self.agents)

    def reviews(self, queue: str) -> bool:
        if self.role == "admin":
            return True
        return self.may("decide") and (self.queues is None or queue in self.queues)

    def sees_item(self, queue: str, agent: str) -> bool:
        """Agents see their agents' items, reviewers and SMEs their queues', other readers
        every item."""
        if self.role == "agent":
            return self.acts_as(agent)
        if self.role in ("reviewer", "sme"):
            return self.reviews(queue)
        return self.may("read")

    def public(self) -> dict[str, Any]:
        return {
            "id": self.token_id,
            "name": self.name,
            "role": self.role,
            "queues": sorted(self.queues) if self.queues is not None else None,
            "agents": sorted(self.agents) if self.agents is not None else None,
            "expires_at": self.expires_at,
        }


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _names(values: list[str] | None, what: str) -> str | None:
    if values is None:
        return None
    cleaned = sorted({v.strip() for v in values if v.strip()})
    if not cleaned:
        raise InvalidRequest(f"--{what} needs at least one name (leave it out for all)")
    return orjson.dumps(cleaned).decode()


def create_token(
    store: Store,
    *,
    role: str,
    name: str,
    queues: list[str] | None = None,
    agents: list[str] | None = None,
    created_by: str | None = None,
    expires_in: float | None = None,
) -> tuple[Principal, str]:
    """Store a new token; returns it in full. It is never shown again. With ``expires_in``
    (seconds) it is refused from then on."""
    if role not in ROLES:
        raise InvalidRequest(f"unknown role {role!r}; one of: {', '.join(ROLES)}")
    if not name or not name.strip():
        raise InvalidRequest("a token needs a name (who or what uses it)")
    if agents is not None and role not in ("agent", "admin"):
        raise InvalidRequest("only agent tokens are limited to agents")
    if queues is not None and role not in ("reviewer", "sme", "admin"):
        raise InvalidRequest("only reviewer and sme tokens are limited to queues")
    if expires_in is not None and not 0 < expires_in <= MAX_EXPIRY_SECONDS:
        raise InvalidRequest("a token's expiry must be more than 0 s and at most ten years away")
    token_id = os.urandom(6).hex()
    secret = secrets.token_urlsafe(32)
    q, a = _names(queues, "queues"), _names(agents, "agents")
    now = time.time()
    expires_at = None if expires_in is None else now + expires_in
    with store.write() as tx:
        tx.sql(
            "INSERT INTO proctor_tokens (id, name, role, queues, agents, secret_hash,"
            " created_at, created_by, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (token_id, name.strip(), role, q, a, _hash(secret), now, created_by, expires_at),
        )
        tx.append(
            "token.create",
            {
                "token_id": token_id,
                "name": name.strip(),
                "role": role,
                "queues": queues,
                "agents": agents,
                "by": created_by,
                "expires_at": expires_at,
            },
        )
    principal = Principal(
        token_id,
        name.strip(),
        role,
        frozenset(orjson.loads(q)) if q else None,
        frozenset(orjson.loads(a)) if a else None,
        expires_at,
    )
    return principal, f"pxt_{token_id}_{secret}"


def expiry_text(expires_at: float | None, now: float | None = None) -> str:
    """``never``, ``expired`` or the moment it expires (UTC), as token lists show it."""
    if expires_at is None:
        return "never"
    if expires_at <= (time.time() if now is None else now):
        return "expired"
    return _utc(expires_at)


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


def list_tokens(store: Store) -> list[dict[str, Any]]:
    with store.read() as conn:
        rows = conn.execute(sa.select(tokens).order_by(tokens.c.created_at)).all()
    now = time.time()
    return [
        {
            "id": r.id,
            "name": r.name,
            "role": r.role,
            "queues": orjson.loads(r.queues) if r.queues else None,
            "agents": orjson.loads(r.agents) if r.agents else None,
            "created_at": r.created_at,
            "created_by": r.created_by,
            "revoked": r.revoked_at is not None,
            "expires_at": r.expires_at,
            "expires": expiry_text(r.expires_at, now),
        }
        for r in rows
    ]


def revoke_token(store: Store, token_id: str, by: str | None = None) -> None:
    with store.write() as tx:
        cur = tx.sql(
            "UPDATE proctor_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
            (time.time(), token_id),
        )
        if cur.rowcount != 1:
            raise NotFound(f"no active token {token_id!r}")
        tx.append("token.revoke", {"token_id": token_id, "by": by})


def count_tokens(store: Store) -> int:
    with store.read() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(tokens)).scalar_one())


class TokenVerifier:
    """Checks bearer tokens, remembering good ones for a moment to spare the database.

    It also remembers which tokens it has accepted (not for how long they stay good: the
    database says that): a client address over its limit of refusals may still use one.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._accepted: dict[str, float | None] = {}  # token -> expires_at
        self._lock = threading.Lock()

    def by_id(self, token_id: str) -> Principal | None:
        """The principal of a console session (which stores only the token's id); None when
        the token is unknown, revoked or expired."""
        try:
            return self._lookup("id:" + token_id, token_id, None)
        except Unauthorized:
            return None

    def cached(self, token: str) -> Principal | None:
        """The principal of a token verified within the last moments, without the database;
        None when it must be looked up. Raises ``Unauthorized`` once it has expired."""
        hit = self._cache.get(token)
        if hit is None or hit[0] <= time.monotonic():
            return None
        return self._unexpired(token, hit[1])

    def accepted(self, token: str) -> bool:
        """This token was good here before, and has not expired since."""
        expires_at = self._accepted.get(token, 0.0)
        return expires_at is None or expires_at > time.time()

    def verify(self, token: str) -> Principal:
        """The principal of a bearer token; ``Unauthorized`` when it is malformed, unknown,
        revoked or expired."""
        parts = token.split("_", 2)
        if len(parts) != 3 or parts[0] != "pxt" or not parts[1] or not parts[2]:
            raise Unauthorized(UNKNOWN)
        return self._lookup(token, parts[1], parts[2])

    def _forget(self, key: str) -> None:
        """A token refused now no longer gets past a limited address without a lookup."""
        with self._lock:
            self._cache.pop(key, None)
            self._accepted.pop(key, None)

    def _unexpired(self, key: str, who: Principal) -> Principal:
        if who.expires_at is not None and who.expires_at <= time.time():
            self._forget(key)
            raise Unauthorized(
                f"the API token expired at {_utc(who.expires_at)}; ask an admin for a new one",
                token_id=who.token_id,
            )
        return who

    def _lookup(self, key: str, token_id: str, secret: str | None) -> Principal:
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return self._unexpired(key, hit[1])
        with self.store.read() as conn:
            row = conn.execute(sa.select(tokens).where(tokens.c.id == token_id)).first()
        if (
            row is None
            or row.revoked_at is not None
            or (secret is not None and not hmac.compare_digest(row.secret_hash, _hash(secret)))
        ):
            self._forget(key)
            raise Unauthorized(UNKNOWN)
        principal = self._unexpired(
            key,
            Principal(
                row.id,
                row.name,
                row.role,
                frozenset(orjson.loads(row.queues)) if row.queues else None,
                frozenset(orjson.loads(row.agents)) if row.agents else None,
                row.expires_at,
            ),
        )
        with self._lock:
            if len(self._cache) > 4096:  # bounded: tokens are few, guesses are not cached
                self._cache.clear()
            if len(self._accepted) > 4096:
                self._accepted.clear()
            self._cache[key] = (now + CACHE_SECONDS, principal)
            self._accepted[key] = principal.expires_at
        return principal
