"""``Proctor``: the one way in for agent code, embedded on a database URL."""

from __future__ import annotations

import asyncio
import builtins
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar, overload

import sqlalchemy as sa

from ._errors import ConfigError, Denied, InvalidRequest, PolicyError
from ._settings import int_setting, setting
from .gate import Gate
from .policy import Action, CompiledPolicy, compile_policy, run_tests
from .review.items import ReviewItem, get_item, list_items
from .review.service import ReviewService
from .runs import Run, current_run
from .store import Store
from .store.tables import policies, state
from .tools import (
    UNSET,
    ToolSpec,
    answer,
    claim_grant,
    make_spec,
    resume_call,
    run_async,
    run_sync,
    wrap,
)

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
    """``px.reviews``: the review queues and the decisions reviewers make in them.

    ``by`` names the reviewer. In embedded mode it is taken as given; the server sets it
    from the authenticated token, never from a request body.
    """

    def __init__(self, px: Proctor) -> None:
        self._px = px
        self.service = ReviewService(px.gate)

    def list(
        self, status: str | None = "pending", queue: str | None = None
    ) -> builtins.list[ReviewItem]:
        """Items, most severe first (risk, SLA pressure, business impact)."""
        return list_items(self._px.store, status=status, queue=queue)

    def get(self, item_id: str) -> ReviewItem:
        return get_item(self._px.store, item_id)

    def approve(self, item_id: str, *, by: str, note: str | None = None) -> ReviewItem:
        """Approve (one vote toward the queue's quorum); the agent's action may then run once."""
        self.service.approve(item_id, by, note)
        return self.get(item_id)

    def reject(self, item_id: str, *, by: str, reason: str) -> ReviewItem:
        """Refuse; the waiting agent gets ``Rejected`` carrying ``reason``."""
        self.service.reject(item_id, by, reason)
        return self.get(item_id)

    def edit(
        self, item_id: str, *, by: str, args: dict[str, Any], note: str | None = None
    ) -> ReviewItem:
        """Approve with changed arguments, checked against the tool's parameters and
        re-evaluated by the policy: an edit never approves what the policy denies."""
        self.service.edit(item_id, by, args, note)
        return self.get(item_id)

    def escalate(self, item_id: str, *, by: str, to: str, note: str | None = None) -> ReviewItem:
        """Move a pending item to another queue, with a note for its reviewers."""
        self.service.escalate(item_id, by, to, note)
        return self.get(item_id)

    def choose(self, item_id: str, *, by: str, option: int, note: str | None = None) -> ReviewItem:
        """Pick option ``option`` (0-based) of a choice item."""
        self.service.choose(item_id, by, option, note)
        return self.get(item_id)

    def sweep(self) -> builtins.list[str]:
        """Apply review timeouts (expire or escalate) and flag runs whose runner died."""
        return self.service.sweep()


@dataclass(frozen=True)
class Option:
    """One ranked option of a choice: a registered tool, its arguments, and what the
    agent knows of it (estimated success probability, risk indicators)."""

    tool: Callable[..., Any]
    args: dict[str, Any]
    probability: float | None = None
    risks: Sequence[str] = ()


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
        self._tools: dict[tuple[str | None, str], ToolSpec] = {}

    def register(self, spec: ToolSpec) -> None:
        """Make a tool resumable by name from this process (``@px.tool`` does this)."""
        self._tools[(spec.agent, spec.name)] = spec

    def _spec(self, agent: str, name: str) -> ToolSpec:
        spec = self._tools.get((agent, name)) or self._tools.get((None, name))
        if spec is None:
            raise InvalidRequest(
                f"tool '{name}' of agent '{agent}' is not registered in this process:"
                " decorate it with @px.tool before resuming"
            )
        return spec

    def recorded_result(self, item_id: str) -> Any:
        """The recorded result of an approved action that already ran (as stored JSON)."""
        return self.reviews.get(item_id).result

    def resume(self, item_id: str, *, args: dict[str, Any] | None = None) -> Any:
        """Run an approved action and return its result; once, however often it is called.

        A second call (from any process) returns the recorded result without running the
        tool again. ``args`` is needed only when the item's arguments had masked fields.
        """
        return self._resume(item_id, args, current_run())

    def _resume(self, item_id: str, args: dict[str, Any] | None, run: Run | None) -> Any:
        item = self.reviews.get(item_id)
        name = item.tool
        if item.kind == "choice" and item.options is not None and item.chosen is not None:
            name = item.options[item.chosen]["tool"]
        spec = self._spec(item.agent, name)
        call: tuple[tuple[Any, ...], dict[str, Any]] | None = None
        digest = None
        if item.status == "approved":  # check the arguments before claiming anything
            call_args, call_kwargs, digest = resume_call(spec, item, args)
            call = (call_args, call_kwargs)
        granted = claim_grant(self, item_id, digest if item.kind != "choice" else None)
        if granted is None:
            return self.recorded_result(item_id)
        if call is None:
            call = resume_call(spec, granted.item, args)[:2]
        if spec.is_async:
            return asyncio.run(run_async(self, spec, granted, run, call))
        return run_sync(self, spec, granted, run, call)

    def choose(
        self,
        options: Sequence[Option],
        *,
        agent: str | None = None,
        queue: str | None = None,
        reason: str = "the agent asks a human to choose",
        wait: Any = UNSET,
    ) -> Any:
        """Guided automation: offer ranked options, a human picks one, it runs once.

        Returns the chosen action's result. ``wait`` as for tools (0: ``ReviewPending`` at
        once; run the pick later with ``px.resume(item_id)``).
        """
        if not options:
            raise InvalidRequest("a choice needs at least one option")
        run = current_run()
        specs: list[ToolSpec] = []
        offered = []
        for option in options:
            spec = getattr(option.tool, "__proctor_tool__", None)
            if not isinstance(spec, ToolSpec):
                raise InvalidRequest(
                    "each option's tool must be a function decorated with @px.tool"
                )
            specs.append(spec)
            action = Action(
                agent or spec.agent_for(run),
                spec.name,
                dict(option.args),
                run.context if run else {},
                spec.reversible,
                spec.reads,
            )
            offered.append(
                (action, {"probability": option.probability, "risks": list(option.risks)})
            )
        verdict = self.gate.open_choice(offered[0][0].agent, offered, run, queue, reason)
        if verdict.decision.decision == "deny":
            raise Denied(
                verdict.decision.reason, rule_ids=verdict.decision.rule_ids, decision_id=verdict.id
            )
        waiting = replace(specs[0], wait=None if wait is UNSET else wait)
        item = answer(self, waiting, verdict, run)
        return self._resume(item.id, None, run)

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
