"""Proctor's one exception tree.

    ProctorError
    ├── DecisionError            an action did not run as asked
    │   ├── Denied               policy refused it (or failed closed)
    │   ├── ReviewPending        a human must decide first; carries .item_id
    │   └── Rejected             a human refused it; carries .reason
    ├── PolicyError              a policy file is invalid; carries .line and .column
    ├── StoreError               the database could not be reached or used
    ├── NotFound                 an id that does not exist
    └── ConfigError              a bad setting or argument

Driver and library exceptions are translated at the boundary with ``raise X from exc``;
anything unknown propagates unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence


class ProctorError(Exception):
    """Root of every error Proctor raises on purpose."""


class DecisionError(ProctorError):
    """An action did not run as the agent asked."""

    def __init__(
        self,
        reason: str,
        *,
        rule_ids: Sequence[str] = (),
        decision_id: str | None = None,
        policy_version: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.rule_ids = tuple(rule_ids)
        self.decision_id = decision_id
        self.policy_version = policy_version


class Denied(DecisionError):
    """The policy refused the action, or Proctor failed closed."""


class ReviewPending(DecisionError):
    """The action waits for a human; ``item_id`` names the review item."""

    def __init__(
        self,
        reason: str,
        *,
        item_id: str,
        rule_ids: Sequence[str] = (),
        decision_id: str | None = None,
        policy_version: str | None = None,
    ) -> None:
        super().__init__(
            reason, rule_ids=rule_ids, decision_id=decision_id, policy_version=policy_version
        )
        self.item_id = item_id


class Rejected(DecisionError):
    """A reviewer refused the action; ``reason`` is theirs."""


class PolicyError(ProctorError):
    """A policy is invalid. ``line`` and ``column`` are 1-based; 0 when unknown."""

    def __init__(self, message: str, *, source: str = "<policy>", line: int = 0, column: int = 0):
        self.message = message
        self.source = source
        self.line = line
        self.column = column
        super().__init__(self.located())

    def located(self) -> str:
        """``FILE:LINE:COL: message`` as editors and CI logs expect."""
        return f"{self.source}:{self.line}:{self.column}: {self.message}"


class StoreError(ProctorError):
    """The decision store could not be reached or used."""


class NotFound(ProctorError):
    """An id that does not exist."""


class ConfigError(ProctorError):
    """A setting or argument that cannot be used."""
