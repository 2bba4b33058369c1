"""``Proctor``: the one way in for agent code, embedded on a database URL."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar, overload

import sqlalchemy as sa

from ._errors import ConfigError, PolicyError
from ._settings import int_setting, setting
from .gate import Gate
from .policy import CompiledPolicy, compile_policy, run_tests
from .review.items import ReviewItem, get_item, list_items
from .runs import Run, current_run
from .store import Store
from .store.tables import policies, state
from .tools import UNSET, make_spec, wrap

F = TypeVar("F", bound=Callable[..., Any])


def read_policy_source(path_or_text: str | Path) -> tuple[str, str]:
    """(text, source name) from a path or from YAML text."""
    if isinstance(path_or_text, Path) or (
        "\n" not in path_or_text and path_or_text.strip().endswith((".yaml", ".yml"))
    ):
        path = Path(path_or_text)
        try:
            return path.read_text(encoding="utf-8"), str(path)
        except FileNotFoundError:
            raise ConfigError(f"no such policy file: {path}") from None
        except UnicodeDecodeError as exc:
            raise PolicyError(
                f"not UTF-8 text: {exc.reason}", source=str(path), line=1, column=1
            ) from exc
    return path_or_text, "<policy>"


class PolicyAPI:
    """``px.policy``: apply and inspect policy versions."""

    def __init__(self, px: Proctor) -> None:
        self._px = px

    def apply(
        self, path_or_text: str | Path, *, author: str | None = None, message: str | None = None
    ) -> str:
        """Validate, run the policy's tests, store it and make it active; returns the version."""
        text, source = read_policy_source(path_or_text)
        policy = compile_policy(text, source)
        failed = [r for r in run_tests(policy) if not r.passed]
        if failed:
            first = failed[0]
            raise PolicyError(
                f"policy test {first.index + 1} ({first.name}) fails: {first.message}",
                source=source,
                line=0,
                column=0,
            )
        store = self._px.store
        with store.write() as tx:
            exists = tx.sql(
                "SELECT 1 FROM proctor_policies WHERE version = ?", (policy.version,)
            ).fetchone()
            if not exists:
                tx.sql(
                    "INSERT INTO proctor_policies"
                    " (version, name, text, created_at, author, message)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (policy.version, policy.name, text, time.time(), author, message),
                )
            tx.append(
                "policy.apply",
                {
                    "version": policy.version,
                    "name": policy.name,
                    "previous": tx.policy_version,
                    "author": author,
                    "message": message,
                },
            )
            tx.set_policy_version(policy.version)
        return policy.version

    def active(self) -> CompiledPolicy | None:
        """The compiled active policy, or None when none was applied."""
        with self._px.store.read() as conn:
            row = conn.execute(
                sa.select(policies.c.text, policies.c.version).join(
                    state, state.c.policy_version == policies.c.version
                )
            ).first()
        return compile_policy(row[0], f"policy {row[1][:12]}") if row else None


class ReviewsAPI:
    """``px.reviews``: the review queues."""

    def __init__(self, px: Proctor) -> None:
        self._px = px

    def list(self, status: str | None = "pending", queue: str | None = None) -> list[ReviewItem]:
        return list_items(self._px.store, status=status, queue=queue)

    def get(self, item_id: str) -> ReviewItem:
        return get_item(self._px.store, item_id)


class Proctor:
    """Embedded Proctor on a database: ``Proctor(database="sqlite:///path")``.

    The database is opened (and migrated) on first use, so constructing one never fails
    on an unreachable database; the first decision does, closed.
    """

    def __init__(
        self,
        database: str | None = None,
        *,
        durability: str | None = None,
        max_args_bytes: int = 1 << 20,
    ) -> None:
        self.database = database or setting("database")
        self.store = Store(
            self.database,
            durability=durability or setting("durability"),
            busy_timeout_ms=int_setting("busy_timeout_ms"),
        )
        self.gate = Gate(self.store, max_args_bytes=max_args_bytes)
        self.policy = PolicyAPI(self)
        self.reviews = ReviewsAPI(self)

    @overload
    def tool(self, fn: F, /) -> F: ...

    @overload
    def tool(
        self,
        fn: None = None,
        /,
        *,
        agent: str | None = None,
        name: str | None = None,
        reversible: bool = True,
        wait: float | object | None = UNSET,
        reads: Sequence[str] = (),
    ) -> Callable[[F], F]: ...

    def tool(
        self,
        fn: Any = None,
        /,
        *,
        agent: str | None = None,
        name: str | None = None,
        reversible: bool = True,
        wait: Any = UNSET,
        reads: Sequence[str] = (),
    ) -> Any:
        """Put a tool behind the gate. ``wait``: seconds to block for a human on review
        (None: the policy's review timeout, the default; 0: raise ReviewPending at once)."""

        def decorate(f: F) -> F:
            spec = make_spec(
                f,
                agent=agent,
                name=name,
                reversible=reversible,
                wait=None if wait is UNSET else wait,
                reads=tuple(reads),
            )
            return wrap(self, spec)  # type: ignore[return-value]

        return decorate(fn) if fn is not None else decorate

    def run(self, agent: str | None = None, **context: Any) -> Run:
        """Group actions into one run; keyword arguments become ``context.*`` for the rules."""
        parent = current_run()
        name = agent or (parent.agent if parent is not None else None)
        if name is None:
            raise ConfigError("px.run() needs agent= (or an enclosing run to inherit it from)")
        return Run(agent=name, context=context, gate=self.gate, parent=parent)

    def expire_item(self, item_id: str) -> bool:
        """Mark a pending item expired (its review timeout passed). True if this call did it."""
        with self.store.write() as tx:
            cur = tx.sql(
                "UPDATE proctor_review_items SET status = 'expired', updated_at = ?"
                " WHERE id = ? AND status = 'pending'",
                (time.time(), item_id),
            )
            if cur.rowcount != 1:
                return False
            tx.append("review.expire", {"item_id": item_id})
        return True

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Proctor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
