"""What the core knows of a run: its ids, its context and the calls made in it so far.

The SDK's ``Run`` (a context manager) extends this; the gate, the server and the backends
only need the state.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from . import _clock


@dataclass
class RunState:
    agent: str
    context: dict[str, Any]
    parent: RunState | None = None
    id: str = field(default_factory=lambda: os.urandom(16).hex())
    trace_id: str = ""
    started: bool = False  # its start is recorded with its first action
    actions: int = 0
    history: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=25))
    # the runs this one descends from, nearest first; a pending approval or a refusing
    # rejection in any of them holds this run too
    ancestors: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.parent is not None:
            self.trace_id = self.parent.trace_id
            self.context = {**self.parent.context, **self.context}
            if not self.ancestors:
                self.ancestors = (self.parent.id, *self.parent.ancestors)
        elif not self.trace_id:
            self.trace_id = os.urandom(16).hex()

    @property
    def lineage(self) -> tuple[str, ...]:
        """This run and its ancestors: the runs whose holds apply to it."""
        return (self.id, *self.ancestors)

    @property
    def parent_id(self) -> str | None:
        return self.ancestors[0] if self.ancestors else None

    def remember(self, tool: str, what: str, decision_id: str | None) -> None:
        """The run so far, as a reviewer sees it: the last few calls and how they went."""
        self.history.append(
            {"tool": tool, "what": what, "decision_id": decision_id, "at": round(_clock.now(), 3)}
        )

    def update(self, /, **context: Any) -> None:
        """Change the context the following actions are judged with."""
        self.context = {**self.context, **context}
