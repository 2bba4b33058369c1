"""Self-healing execution of one allowed call: deadlines, safe retries, fallback, escalation.

The policy's ``tools:`` section says how a tool heals (the gate hands it over with the
decision, so an agent talking to a server heals the same way). Every path has a bound:
``retry.attempts`` and ``retry.deadline`` stop retries, a breaker that opens stops them at
once, a fallback runs once and is never itself retried into a loop, an escalation waits at
most the queue's review timeout.

A retry happens only when it is safe. An error that did not commit (anything but the
ambiguous kinds: a refused connection, a 503, a validation error) may be retried. An
ambiguous one (a timeout, a reset connection, the body overrunning its ``timeout``) is
retried only if the tool deduplicates by itself (``retry.idempotent``) or its lookup says
the effect did not happen; if the lookup finds the effect, the call is done with the
result it found. ``reversible`` alone is not enough: a second charge that could be
refunded is still a second charge.

The mechanics (which try, how long to pause, when to stop) are tenacity's.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import tenacity

from ._errors import DeadlineExceeded, Denied
from ._timed import TimeLimit, within
from .policy.schema import TRANSIENT_ERRORS
from .reconcile import ask, is_ambiguous

if TYPE_CHECKING:
    from .calls import Call
    from .sdk import Proctor

RECOVERED_BY_RETRY = "retry"
RECOVERED_BY_FALLBACK = "fallback"
RECOVERED_BY_LOOKUP = "lookup"


class _BreakerOpened(Exception):
    """Raised from tenacity's before-sleep hook to stop retrying: the breaker opened."""


@dataclass
class Healing:
    """One call's healing settings and what happened to it so far."""

    settings: dict[str, Any]
    attempts: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    committed: tuple[Any, ...] | None = None  # (result,) when a lookup found the effect
    breaker_opened: bool = False
    last_error: BaseException | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def timeout(self) -> float | None:
        value = self.settings.get("timeout")
        return float(value) if value is not None else None

    @property
    def retry(self) -> dict[str, Any] | None:
        return self.settings.get("retry")

    @property
    def max_attempts(self) -> int:
        return int(self.retry["attempts"]) if self.retry else 1

    @property
    def escalate(self) -> dict[str, Any] | None:
        return self.settings.get("escalate")

    @property
    def fallback_call(self) -> dict[str, Any] | None:
        return self.settings.get("fallback_call")

    def is_service_failure(self, error: BaseException) -> bool:
        """An error the policy treats as the service failing (``retry.on``, or the default
        transient kinds without a retry): the ones a fallback or a person may answer."""
        names = self.retry["on"] if self.retry else list(TRANSIENT_ERRORS)
        return isinstance(error, DeadlineExceeded) or _named(error, names)

    def may_have_happened(self, call: Call, error: BaseException) -> bool:
        """The last try failed in a way that may have committed, and no lookup said it did
        not: standing a fallback in for it could do the work twice."""
        if not (isinstance(error, DeadlineExceeded) or is_ambiguous(call.spec, error)):
            return False
        last = self.history[-1] if self.history else {}
        return last.get("reconciled") != "not_committed"

    def healed(self, recovered: str | None = None) -> dict[str, Any]:
        """The fields the call's outcome record carries."""
        fields: dict[str, Any] = {"attempts": self.attempts} if self.attempts > 1 else {}
        if recovered is not None:
            fields["recovered"] = recovered
        return fields


def healing_of(call: Call) -> Healing | None:
    settings = call.verdict.healing
    return Healing(settings) if settings else None


# -- what may be tried again ---------------------------------------------------------------


def _named(error: BaseException, names: list[str]) -> bool:
    """The error's class, or one it derives from, is named in ``retry.on``."""
    wanted = set(names)
    return any(cls.__name__ in wanted for cls in type(error).__mro__)


def _retryable(px: Proctor, call: Call, heal: Healing, error: BaseException) -> bool:
    """Whether a failed try may be tried again: named in ``on`` and safe. An ambiguous
    failure asks the tool's lookup; a lookup that finds the effect ends the call with it."""
    retry = heal.retry
    entry: dict[str, Any] = {
        "attempt": heal.attempts,
        "error_type": type(error).__name__,
        "error": str(error)[:500],
    }
    heal.history.append(entry)
    heal.last_error = error
    if retry is None or not isinstance(error, Exception) or not _named(error, retry["on"]):
        return False
    ambiguous = isinstance(error, DeadlineExceeded) or is_ambiguous(call.spec, error)
    entry["ambiguous"] = ambiguous
    if not ambiguous or retry.get("idempotent"):
        return True
    lookup = call.spec.lookup
    if lookup is None:
        return False  # it may have happened: never blind
    found = ask(lookup, call)
    entry["reconciled"] = found.answer
    if found.answer == "committed":
        heal.committed = (found.result,)
        return False
    return found.answer == "not_committed"


def _wait(heal: Healing) -> Any:
    """Pause before the next try: exponential or fixed, capped at ``max``, with ``jitter``
    as the share of each pause drawn at random."""
    retry = heal.retry or {}
    base, top, jitter = float(retry["base"]), float(retry["max"]), float(retry["jitter"])
    if retry.get("backoff") == "fixed":
        plain: Any = tenacity.wait_fixed(base)
    else:
        plain = tenacity.wait_exponential(multiplier=base, min=base, max=top)

    def pause(state: tenacity.RetryCallState) -> float:
        seconds = min(float(plain(state)), top)
        return seconds * (1 - jitter) + random.uniform(0, seconds * jitter)

    return pause


def _stop(heal: Healing) -> Any:
    retry = heal.retry or {"attempts": 1, "deadline": 0.0}
    return tenacity.stop_after_attempt(int(retry["attempts"])) | tenacity.stop_before_delay(
        float(retry["deadline"])
    )


def _record_attempt(px: Proctor, call: Call, heal: Healing, error: BaseException) -> None:
    """Each failed try that is followed by another is a record of the same call, and
    counts toward the tool's breaker; a breaker that opens stops the retries."""
    entry = heal.history[-1]
    state = px.backend.record_attempt(
        call.verdict,
        call.action(),
        call.run,
        attempt=heal.attempts,
        error=error,
        detail={k: v for k, v in entry.items() if k in ("ambiguous", "reconciled")},
        call_id=call.id if call.verdict.call is not None else None,
    )
    entry["breaker"] = state
    if state == "open":
        heal.breaker_opened = True
        raise _BreakerOpened


# -- running the body, tried as the policy says ----------------------------------------------


def run_with_healing(px: Proctor, call: Call, heal: Healing) -> Any:
    """The body, retried while that is allowed and safe; the last error is raised."""
    args, kwargs = call.call_args
    fn = call.spec.fn
    timeout = heal.timeout

    def attempt() -> Any:
        heal.attempts += 1
        if timeout is None:
            return fn(*args, **kwargs)
        return _with_deadline(fn, args, kwargs, timeout, call.tool)

    if heal.retry is None:
        return attempt()
    retrying = tenacity.Retrying(
        stop=_stop(heal),
        wait=_wait(heal),
        retry=tenacity.retry_if_exception(lambda e: _retryable(px, call, heal, e)),
        before_sleep=lambda s: _record_attempt(px, call, heal, _failure(s)),
        reraise=True,
    )
    try:
        return retrying(attempt)
    except _BreakerOpened:
        raise _last_error(heal) from None


async def run_with_healing_async(px: Proctor, call: Call, heal: Healing) -> Any:
    args, kwargs = call.call_args
    fn = call.spec.fn
    timeout = heal.timeout

    async def attempt() -> Any:
        heal.attempts += 1
        if timeout is None:
            return await fn(*args, **kwargs)
        try:
            return await asyncio.wait_for(fn(*args, **kwargs), timeout)
        except TimeoutError:
            raise DeadlineExceeded(
                f"{call.tool} ran past its {timeout:g}s timeout and was cancelled"
            ) from None

    if heal.retry is None:
        return await attempt()

    async def retryable(error: BaseException) -> bool:
        return await asyncio.to_thread(_retryable, px, call, heal, error)

    async def before_sleep(state: tenacity.RetryCallState) -> None:
        await asyncio.to_thread(_record_attempt, px, call, heal, _failure(state))

    retrying = tenacity.AsyncRetrying(
        stop=_stop(heal),
        wait=_wait(heal),
        retry=tenacity.asyncio.retry_if_exception(retryable),
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        return await retrying(attempt)
    except _BreakerOpened:
        raise _last_error(heal) from None


def _failure(state: tenacity.RetryCallState) -> BaseException:
    assert state.outcome is not None
    error = state.outcome.exception()
    assert error is not None
    return error


def _last_error(heal: Healing) -> BaseException:
    return heal.last_error or RuntimeError("the breaker opened while retrying")


def _with_deadline(
    fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float, tool: str
) -> Any:
    """Run a sync body on a thread of its own and abandon it past ``timeout``: Python cannot
    stop a thread, so the call's outcome becomes unknown and is reconciled."""
    try:
        return within(timeout, f"proctor-{tool}", fn, *args, **kwargs)
    except TimeLimit:
        raise DeadlineExceeded(
            f"{tool} ran past its {timeout:g}s timeout and was abandoned"
        ) from None


# -- when the tool cannot be healed: fallback, then a person -----------------------------------


def fallback_for(heal: Healing) -> tuple[str, dict[str, Any]] | None:
    """The fallback tool and arguments for this call, or None (none set, or its arguments
    could not be built: then nothing runs in its place)."""
    found = heal.fallback_call
    if not found or "tool" not in found:
        return None
    return str(found["tool"]), dict(found.get("args") or {})


def breaker_refused(error: BaseException, tool: str) -> bool:
    return isinstance(error, Denied) and f"breaker.{tool}" in error.rule_ids
