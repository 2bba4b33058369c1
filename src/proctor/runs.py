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

    backend: Backend | None = field(default=None, repr=False)
    tracer: Any = field(default=None, repr=False)
    _token: Token[Run | None] | None = field(default=None, repr=False)
    _span: Any = field(default=None, repr=False)

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
