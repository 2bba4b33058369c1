"""Runs: a group of actions with one run id, one trace id and shared context."""

from __future__ import annotations

from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .runstate import RunState

if TYPE_CHECKING:
    from types import TracebackType

    from .backends import Backend

_current: ContextVar[Run | None] = ContextVar("proctor_run", default=None)


def current_run() -> Run | None:
    return _current.get()


@dataclass
class Run(RunState):
    """Use as ``with px.run(agent=..., confidence=0.9) as run:``; nested runs share the trace."""

    durable: bool = False  # its calls get identities from the run, so it can be resumed
    resumed: bool = False
    backend: Backend | None = field(default=None, repr=False)
    _ordinals: dict[str, int] = field(default_factory=dict, repr=False)
    tracer: Any = field(default=None, repr=False)
    _token: Token[Run | None] | None = field(default=None, repr=False)
    _span: Any = field(default=None, repr=False)

    def next_durable_key(self, tool: str) -> str | None:
        """The identity of this run's next call of ``tool`` if the run (or one it is nested
        in) is durable: the durable run's id, the tool, and the count of its calls so far.
        A resumed run that makes the same calls in the same order gets the same identities."""
        root: RunState | None = self
        while root is not None and not getattr(root, "durable", False):
            root = root.parent
        if not isinstance(root, Run):
            return None
        n = root._ordinals.get(tool, 0) + 1
        root._ordinals[tool] = n
        return f"run:{root.id}:{tool}:{n}"

    def __enter__(self) -> Run:
        if self.tracer is not None:
            from .telemetry.tracing import run_span, trace_id_hex

            self._span = run_span(self.tracer, self.agent, self.id)
            span = self._span.__enter__()
            self.trace_id = trace_id_hex(span)  # the log and the traces share the id
        self._token = _current.set(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            _current.reset(self._token)
            self._token = None
        try:
            if self.started and self.backend is not None:
                self.backend.end_run(self, exc)
        finally:
            if self._span is not None:
                span_cm, self._span = self._span, None
                span_cm.__exit__(exc_type, exc, tb)
