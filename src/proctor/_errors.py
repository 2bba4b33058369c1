"""Proctor's one exception tree.

    ProctorError
    ├── DecisionError            an action did not run as asked
    │   ├── Denied               policy refused it (or failed closed)
    │   ├── ReviewPending        a human must decide first; carries .item_id
    │   └── Rejected             a human refused it; carries .reason
    ├── PolicyError              a policy file is invalid; carries .line and .column
    ├── StoreError               the database could not be reached or used
    ├── NotFound                 an id that does not exist (HTTP 404)
    ├── Conflict                 the item was already decided, or is being run (409)
    ├── Forbidden                not allowed for this principal, e.g. self-approval (403)
    ├── InvalidRequest           a request that cannot be carried out as sent (422)
    ├── TooManyRequests          too many refused requests from one address; carries .retry_after
    ├── ToolFailed               an approved action ran and raised; carries .error_type
    ├── InDoubt                  an approved action may or may not have run; a human decides
    ├── StillRunning (Conflict)  another runner holds the claim past the caller's wait
    ├── ConfigError              a bad setting or argument
    └── WebhookError             a received webhook whose signature or timestamp is wrong

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


class Conflict(ProctorError):
    """The state changed under the request: already decided, or running elsewhere."""


class Forbidden(ProctorError):
    """The principal may not do this (an agent approving its own action, say)."""


class InvalidRequest(ProctorError):
    """A request that cannot be carried out as sent (wrong argument types, unknown queue)."""


class TooManyRequests(ProctorError):
    """Too many requests without a valid token came from this address: wait ``retry_after``
    seconds (HTTP 429 with ``Retry-After``)."""

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ToolFailed(ProctorError):
    """An approved action ran and raised; a later resume reports the recorded failure."""

    def __init__(self, message: str, *, error_type: str, item_id: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.item_id = item_id


class DeadlineExceeded(ProctorError, TimeoutError):
    """A tool's body ran past the policy's ``timeout``: abandoned (sync) or cancelled (async).
    Its effect may or may not have happened, so it is reconciled, never retried blindly."""


class InDoubt(ProctorError):
    """An action may or may not have happened: its runner stopped answering before it
    recorded the outcome, or it failed in a way that may have committed.

    It is never re-run blindly: the tool's lookup or a person settles it first.
    ``item_id`` names the review item a person decides it in (empty while none is open);
    ``call_id`` the call, for a call with an identity.
    """

    def __init__(self, message: str, *, item_id: str, call_id: str | None = None) -> None:
        super().__init__(message)
        self.item_id = item_id
        self.call_id = call_id


class StillRunning(Conflict):
    """Another runner holds the approved action's claim (and renews its lease) for longer
    than the caller would wait; its outcome is not recorded yet. Ask again later."""

    def __init__(self, message: str, *, item_id: str) -> None:
        super().__init__(message)
        self.item_id = item_id


class ConfigError(ProctorError):
    """A setting or argument that cannot be used."""


class WebhookError(ProctorError):
    """A received webhook that does not verify (``proctor.verify_webhook``): a missing or
    bad signature, or a timestamp outside the tolerance (a replay, or a clock far off)."""


# The HTTP status each error carries (datasette's Base400 idea): the server renders errors
# with it, and the remote client turns statuses back into the same exceptions.
HTTP_STATUS: dict[type[ProctorError], int] = {
    NotFound: 404,
    Conflict: 409,
    Forbidden: 403,
    InvalidRequest: 422,
    PolicyError: 422,
    ConfigError: 422,
    TooManyRequests: 429,
    StoreError: 503,
}


def status_of(exc: ProctorError) -> int:
    for kind in type(exc).__mro__:
        if kind in HTTP_STATUS:
            return HTTP_STATUS[kind]
    return 400


def error_for_status(status: int) -> type[ProctorError]:
    """The exception a client raises for an error status (401, 413 and 429 included)."""
    if status == 401:
        return Forbidden
    if status in (413, 422):
        return InvalidRequest
    for kind, code in HTTP_STATUS.items():
        if code == status:
            return kind
    return ProctorError
