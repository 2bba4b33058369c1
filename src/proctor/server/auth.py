"""API tokens and what each role may do.

A token is ``pxt_<id>_<secret>``; only SHA-256(secret) is stored, and the whole token is
shown once, at creation. Secrets are 32 random bytes, so a fast hash is enough (a slow
password hash protects guessable passwords, which these are not).
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

from .._errors import InvalidRequest, NotFound
from ..store import Store
from ..store.tables import tokens

ROLES = ("admin", "policy_author", "reviewer", "sme", "agent", "viewer")
CACHE_SECONDS = 2.0  # a revoked token stops working within this long in every server process


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's name, role and the queues/agents it is limited to."""

    token_id: str
    name: str
    role: str
    queues: frozenset[str] | None  # None: every queue
    agents: frozenset[str] | None  # None: every agent

    def acts_as(self, agent: str) -> bool:
        if self.role == "admin":
            return True
        return self.role == "agent" and (self.agents is None or agent in self.agents)

    def reviews(self, queue: str) -> bool:
        if self.role == "admin":
            return True
        return self.role in ("reviewer", "sme") and (self.queues is None or queue in self.queues)

    def sees_item(self, queue: str, agent: str) -> bool:
        if self.role in ("admin", "viewer", "policy_author"):
            return True
        if self.role == "agent":
            return self.acts_as(agent)
        return self.reviews(queue)

    def public(self) -> dict[str, Any]:
        return {
            "id": self.token_id,
            "name": self.name,
            "role": self.role,
            "queues": sorted(self.queues) if self.queues is not None else None,
            "agents": sorted(self.agents) if self.agents is not None else None,
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
) -> tuple[Principal, str]:
    """Store a new token; returns it in full. It is never shown again."""
    if role not in ROLES:
        raise InvalidRequest(f"unknown role {role!r}; one of: {', '.join(ROLES)}")
    if not name or not name.strip():
        raise InvalidRequest("a token needs a name (who or what uses it)")
    if agents is not None and role not in ("agent", "admin"):
        raise InvalidRequest("only agent tokens are limited to agents")
    if queues is not None and role not in ("reviewer", "sme", "admin"):
        raise InvalidRequest("only reviewer and sme tokens are limited to queues")
    token_id = os.urandom(6).hex()
    secret = secrets.token_urlsafe(32)
    q, a = _names(queues, "queues"), _names(agents, "agents")
    with store.write() as tx:
        tx.sql(
            "INSERT INTO proctor_tokens (id, name, role, queues, agents, secret_hash,"
            " created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (token_id, name.strip(), role, q, a, _hash(secret), time.time(), created_by),
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
            },
        )
    principal = Principal(
        token_id,
        name.strip(),
        role,
        frozenset(orjson.loads(q)) if q else None,
        frozenset(orjson.loads(a)) if a else None,
    )
    return principal, f"pxt_{token_id}_{secret}"


def list_tokens(store: Store) -> list[dict[str, Any]]:
    with store.read() as conn:
        rows = conn.execute(sa.select(tokens).order_by(tokens.c.created_at)).all()
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
    """Checks bearer tokens, remembering good ones for a moment to spare the database."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def by_id(self, token_id: str) -> Principal | None:
        """The principal of a console session (which stores only the token's id)."""
        return self._lookup("id:" + token_id, token_id, None)

    def verify(self, token: str) -> Principal | None:
        """The principal of a bearer token, or None when it is malformed, unknown or revoked."""
        parts = token.split("_", 2)
        if len(parts) != 3 or parts[0] != "pxt" or not parts[1] or not parts[2]:
            return None
        return self._lookup(token, parts[1], parts[2])

    def _lookup(self, key: str, token_id: str, secret: str | None) -> Principal | None:
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        with self.store.read() as conn:
            row = conn.execute(sa.select(tokens).where(tokens.c.id == token_id)).first()
        if row is None or row.revoked_at is not None:
            return None
        if secret is not None and not hmac.compare_digest(row.secret_hash, _hash(secret)):
            return None
        principal = Principal(
            row.id,
            row.name,
            row.role,
            frozenset(orjson.loads(row.queues)) if row.queues else None,
            frozenset(orjson.loads(row.agents)) if row.agents else None,
        )
        with self._lock:
            if len(self._cache) > 4096:  # bounded: tokens are few, guesses are not cached
                self._cache.clear()
            self._cache[key] = (now + CACHE_SECONDS, principal)
        return principal
