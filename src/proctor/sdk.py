"""``Proctor``: the one way in for agent code, embedded on a database or remote on a server."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar, overload

from ._errors import ConfigError, Denied, InvalidRequest, PolicyError
from ._settings import float_setting, int_setting, setting
from .approvals import answer, claim_grant, resume_call, run_async, run_sync
from .backends import Backend
from .backends.local import LocalBackend
from .calls import Call, prepare, run_async_prepared
from .calls import call_id as _call_id
from .calls import decide as _decide
from .calls import run as _run_prepared
from .gate import Gate
from .heartbeat import Heartbeat
from .policy import Action, CompiledPolicy
from .review.items import ReviewItem
from .runs import Run, current_run
from .store import Store
from .telemetry.tracing import make_tracer
from .tools import UNSET, ToolSpec, make_spec, wrap

F = TypeVar("F", bound=Callable[..., Any])


def _retention() -> float:
    from .policy.durations import parse_duration

    raw = setting("call_retention")
    try:
        return parse_duration(raw)
    except ValueError as exc:
        raise ConfigError(f"PROCTOR_CALL_RETENTION: {exc}") from exc


def _spec_of(tool: Callable[..., Any]) -> ToolSpec:
    spec = getattr(tool, "__proctor_tool__", None)
    if not isinstance(spec, ToolSpec):
        raise InvalidRequest("decide a function decorated with @px.tool")
    return spec


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
        return self._px.backend.apply_policy(text, source, author, message)

    def active(self) -> CompiledPolicy | None:
        """The compiled active policy, or None when none was applied."""
        return self._px.backend.active_policy()


class ReviewsAPI:
    """``px.reviews``: the review queues and the decisions reviewers make in them.

    ``by`` names the reviewer. Embedded, it is taken as given; against a server the
    reviewer is whoever the token belongs to, and ``by`` is ignored.
    """

    def __init__(self, px: Proctor) -> None:
        self._px = px

    def list(  # the contract names it px.reviews.list
        self, status: str | None = "pending", queue: str | None = None
    ) -> builtins.list[ReviewItem]:
        """Items, most severe first (risk, SLA pressure, business impact)."""
        return self._px.backend.items(status, queue)

    def get(self, item_id: str) -> ReviewItem:
        return self._px.backend.item(item_id)

    def approve(
        self,
        item_id: str,
        *,
        by: str = "",
        note: str | None = None,
        confirm_not_run: bool = False,
    ) -> ReviewItem:
        """Approve (one vote toward the queue's quorum); the agent's action may then run once.

        An item ``in_doubt`` may have run already; approving it again needs
        ``confirm_not_run=True``: the reviewer checked that the effect did not happen.
        """
        fields: dict[str, Any] = {"note": note}
        if confirm_not_run:
            fields["confirm_not_run"] = True
        return self._px.backend.review("approve", item_id, by, **fields)

    def reject(self, item_id: str, *, by: str = "", reason: str) -> ReviewItem:
        """Refuse; the waiting agent gets ``Rejected`` carrying ``reason``."""
        return self._px.backend.review("reject", item_id, by, reason=reason)

    def edit(
        self, item_id: str, *, by: str = "", args: dict[str, Any], note: str | None = None
    ) -> ReviewItem:
        """Approve with changed arguments, checked against the tool's parameters and
        re-evaluated by the policy: an edit never approves what the policy denies."""
        return self._px.backend.review("edit", item_id, by, args=args, note=note)

    def escalate(
        self, item_id: str, *, by: str = "", to: str, note: str | None = None
    ) -> ReviewItem:
        """Move a pending item to another queue, with a note for its reviewers."""
        return self._px.backend.review("escalate", item_id, by, to=to, note=note)

    def choose(
        self, item_id: str, *, by: str = "", option: int, note: str | None = None
    ) -> ReviewItem:
        """Pick option ``option`` (0-based) of a choice item."""
        return self._px.backend.review("choose", item_id, by, option=option, note=note)

    def settle(
        self, item_id: str, *, by: str = "", happened: bool, note: str | None = None
    ) -> ReviewItem:
        """Settle a call that may or may not have happened (a ``settle`` item): it did (the
        call is closed), or it did not (its next repeat runs it, once)."""
        return self._px.backend.review("settle", item_id, by, happened=happened, note=note)

    def sweep(self) -> builtins.list[str]:
        """Apply review timeouts (expire or escalate) and flag runs whose runner died."""
        return self._px.backend.sweep()


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
        url: str | None = None,
        token: str | None = None,
        timeout: float = 10.0,
        durability: str | None = None,
        max_args_bytes: int = 1 << 20,
        tracer_provider: Any = None,
    ) -> None:
        self.backend: Backend
        self.lease_seconds = float_setting("lease_seconds")
        self.tracer, self._owned_provider = make_tracer(tracer_provider)
        if url is not None:
            if database is not None:
                raise ConfigError("give database= (embedded) or url= (a server), not both")
            from .backends.remote import RemoteBackend

            self.url: str | None = url
            self.database: str | None = None
            self.backend = RemoteBackend(url, token=token, timeout=timeout)
        else:
            self.url = None
            self.database = database or setting("database")
            store = Store(
                self.database,
                durability=durability or setting("durability"),
                busy_timeout_ms=int_setting("busy_timeout_ms"),
                pool_size=int_setting("pool_size"),
            )
            self.backend = LocalBackend(
                store,
                max_args_bytes=max_args_bytes,
                lease_seconds=self.lease_seconds,
                call_retention=_retention(),
            )
        self.heartbeat = Heartbeat(self._renew)
        self.policy = PolicyAPI(self)
        self.reviews = ReviewsAPI(self)
        self._tools: dict[tuple[str | None, str], ToolSpec] = {}

    @property
    def local(self) -> LocalBackend:
        """The embedded backend (its store and gate); an error in remote mode."""
        if not isinstance(self.backend, LocalBackend):
            raise ConfigError("this Proctor talks to a server; it has no local store")
        return self.backend

    @property
    def store(self) -> Store:
        return self.local.store

    @property
    def gate(self) -> Gate:
        return self.local.gate

    def register(self, spec: ToolSpec) -> None:
        """Make a tool resumable by name from this process (``@px.tool`` does this)."""
        self._tools[(spec.agent, spec.name)] = spec

    def registered(self, agent: str, name: str) -> ToolSpec:
        """The tool ``name`` as registered in this process (for ``agent``, or for any)."""
        return self._spec(agent, name)

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
        return self.backend.item(item_id).result

    def resume(
        self, item_id: str, *, args: dict[str, Any] | None = None, wait: float | None = None
    ) -> Any:
        """Run an approved action and return its result; once, however often it is called.

        A second call (from any process) returns the recorded result without running the
        tool again. ``args`` is needed only when the item's arguments had masked fields.
        While another process runs it, this waits for that outcome up to ``wait`` seconds
        (default 60), then raises ``StillRunning``; if that runner stops answering, the item
        goes in doubt and this raises ``InDoubt``.
        """
        if wait is not None and (isinstance(wait, bool) or not wait >= 0):
            raise ConfigError("wait must be None or a number of seconds >= 0")
        return self._resume(item_id, args, current_run(), wait)

    def _resume(
        self,
        item_id: str,
        args: dict[str, Any] | None,
        run: Run | None,
        wait: float | None = None,
    ) -> Any:
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
        granted = claim_grant(self, item_id, digest if item.kind != "choice" else None, wait)
        if granted is None:
            return self.recorded_result(item_id)
        if call is None:
            call = resume_call(spec, granted.item, args)[:2]
        if spec.is_async:
            return asyncio.run(run_async(self, spec, granted, run, call))
        return run_sync(self, spec, granted, run, call)

    def _renew(self, held: tuple[str, str], token: str) -> bool:
        kind, ident = held
        if kind == "call":
            return self.backend.renew_call(ident, token)
        return self.backend.renew(ident, token)

    def reconcile(self, *, limit: int = 100) -> list[tuple[str, str]]:
        """Ask each registered tool's lookup about that tool's unknown calls, oldest first
        (at most ``limit`` per tool), and record the answers: run it on a schedule in the
        process that has the lookups. Returns ``(call_id, answer)`` pairs.

        ``committed`` closes a call; ``not_committed`` lets its next repeat run it once;
        ``conflicting`` and ``unavailable`` keep it unknown, for a person. Nothing is run
        here: the body runs only when the agent repeats the call."""
        from .reconcile import reconcile_unknown

        return reconcile_unknown(self, list(self._tools.values()), limit)

    def call_id(self, value: str) -> AbstractContextManager[None]:
        """``with px.call_id("tc_123"): refund(...)`` gives that call an identity: a repeat
        with the same identity and arguments returns the recorded result, never runs again."""
        return _call_id(value)

    def decide(
        self, tool: Callable[..., Any], /, *args: Any, call_id: str | None = None, **kwargs: Any
    ) -> Call:
        """Decide a call of ``tool`` (a function wrapped with ``@px.tool``) without running
        it; ``execute`` runs it later under exactly that decision, once."""
        spec = _spec_of(tool)
        return _decide(self, spec, args, kwargs, call_id)

    def execute(self, call: Call, *, wait: Any = UNSET) -> Any:
        """Run a decided call's body under its decision: wait for its review or hold (up to
        ``wait``, default the tool's), and run it once; a completed call's recorded result
        is returned without running. Raises as the wrapped tool would."""
        if call.spec.is_async:
            raise ConfigError(f"{call.tool} is async: await px.execute_async(call)")
        chosen = call.spec.wait if wait is UNSET else wait
        return _run_prepared(self, prepare(self, call, chosen))

    async def execute_async(self, call: Call, *, wait: Any = UNSET) -> Any:
        """``execute`` for an async tool (or a sync one, run on a worker thread)."""
        chosen = call.spec.wait if wait is UNSET else wait
        prepared = await asyncio.to_thread(prepare, self, call, chosen)
        if call.spec.is_async:
            return await run_async_prepared(self, prepared)
        return await asyncio.to_thread(_run_prepared, self, prepared)

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
        verdict = self.backend.open_choice(offered[0][0].agent, offered, run, queue, reason)
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
        key: str | Sequence[str] | None = None,
        ambiguous: Sequence[type[BaseException]] | None = None,
        schema: dict[str, Any] | None = None,
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
        key: str | Sequence[str] | None = None,
        ambiguous: Sequence[type[BaseException]] | None = None,
        schema: dict[str, Any] | None = None,
    ) -> Any:
        """Put a tool behind the gate. ``wait``: seconds to block for a human on review
        (None: the policy's review timeout, the default; 0: raise ReviewPending at once).

        ``key``: the arguments whose values are a call's identity (``key="order_id"``): a
        repeat of a completed call with the same key and arguments returns its recorded
        result without running. ``ambiguous``: the errors after which the effect may have
        happened (default: timeouts and dropped connections); such a call is ``unknown``
        until reconciled (``@tool.reconcile``) or settled by a person. ``schema``: the
        tool's parameters as a JSON Schema object, for a function that takes ``**kwargs``
        on behalf of a tool described elsewhere (an MCP server's, a framework's): reviewers'
        edits are checked against it.
        """

        def decorate(f: F) -> F:
            spec = make_spec(
                f,
                agent=agent,
                name=name,
                reversible=reversible,
                wait=None if wait is UNSET else wait,
                reads=tuple(reads),
                key=(key,) if isinstance(key, str) else tuple(key) if key is not None else None,
                ambiguous=tuple(ambiguous) if ambiguous is not None else None,
                schema=schema,
            )
            return wrap(self, spec)  # type: ignore[return-value]

        return decorate(fn) if fn is not None else decorate

    def run(
        self,
        /,
        agent: str | None = None,
        *,
        parent: str | None = None,
        durable: bool = False,
        resume: str | None = None,
        **context: Any,
    ) -> Run:
        """Group actions into one run; keyword arguments become ``context.*`` for the rules
        (any name but ``agent``, ``parent``, ``durable`` and ``resume``).

        ``parent``: the id of a run in another process this one works for (a delegated
        sub-agent): the parent's pending approvals hold this run too, and a rejection that
        refuses dependents refuses it.

        ``durable=True``: every gated call in the run gets an identity from the run's id,
        the tool and how many calls of that tool came before it, so ``resume=`` can replay
        it. ``resume=RUN_ID`` continues a durable run, in this or a new process: calls whose
        outcome is recorded return their recorded results, in order, without running; the
        first unfinished call continues (reconciled first if its outcome is unknown).
        """
        enclosing = current_run()
        name = agent or (enclosing.agent if enclosing is not None else None)
        if name is None:
            raise ConfigError("px.run() needs agent= (or an enclosing run to inherit it from)")
        if resume is not None:
            if not isinstance(resume, str) or not 1 <= len(resume) <= 64:
                raise ConfigError("resume= is the id of a durable run (at most 64 characters)")
            return Run(
                agent=name,
                context=context,
                backend=self.backend,
                tracer=self.tracer,
                id=resume,
                durable=True,
                resumed=True,
                ancestors=tuple(self.backend.lineage(resume))[1:],
            )
        if parent is not None:  # an explicit parent, from another process: it wins
            return Run(
                agent=name,
                context=context,
                backend=self.backend,
                tracer=self.tracer,
                ancestors=tuple(self.backend.lineage(parent)) or (parent,),
                durable=durable,
            )
        return Run(
            agent=name,
            context=context,
            backend=self.backend,
            parent=enclosing,
            tracer=self.tracer,
            durable=durable,
        )

    def close(self) -> None:
        self.heartbeat.close()
        if self._owned_provider is not None:
            self._owned_provider.shutdown()  # flushes spans still in the batch
            self._owned_provider = None
        self.backend.close()

    def __enter__(self) -> Proctor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
