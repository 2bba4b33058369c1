"""Runs: a group of actions with one run id, one trace id and shared context."""

from __future__ import annotations

import os
import time
from collections import deque
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from types import TracebackType

    from .backend import Backend

_current: ContextVar[Run | None] = ContextVar("proctor_run", default=None)


def current_run() -> Run | None:
    return _current.get()


@dataclass
class Run:
    """Use as ``with px.run(agent=..., confidence=0.9) as run:``; nested runs share the trace."""

    agent: str
    context: dict[str, Any]
    backend: Backend
    parent: Run | None = None
    id: str = field(default_factory=lambda: os.urandom(16).hex())
    trace_id: str = ""
    started: bool = False  # its start is recorded with its first action
    actions: int = 0
    history: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=25))
    holding: set[str] = field(default_factory=set)  # pending approvals that hold this run
    _token: Token[Run | None] | None = field(default=None, repr=False)
    tracer: Any = field(default=None, repr=False)
    _span: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.parent is not None:
            self.trace_id = self.parent.trace_id
            self.context = {**self.parent.context, **self.context}
        elif not self.trace_id:
            self.trace_id = os.urandom(16).hex()

    def remember(self, tool: str, what: str, decision_id: str | None) -> None:
        """The run so far, as a reviewer sees it: the last few calls and how they went."""
        self.history.append(
            {"tool": tool, "what": what, "decision_id": decision_id, "at": round(time.time(), 3)}
        )

    def update(self, /, **context: Any) -> None:
        """Change the context the following actions are judged with."""
        self.context = {**self.context, **context}

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
            if self.started:
                self.backend.end_run(self, exc)
        finally:
            if self._span is not None:
                span_cm, self._span = self._span, None
                span_cm.__exit__(exc_type, exc, tb)
