"""The seam between the SDK and where decisions are made.

``LocalBackend`` (``backends.local``) runs the gate and the review service on a database
(embedded mode); ``RemoteBackend`` (``backends.remote``) sends the same calls to
``proctor serve``. The tool wrapper and the SDK's APIs only ever talk to a ``Backend``, so
both modes share every rule. The wire forms here are what the server and the remote client
exchange.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from ..execution.calls import CallRef, CallState, Settlement, UnknownCall
from ..gate import CallOutcome, Verdict
from ..policy import Action, CompiledPolicy, Decision
from ..review.items import ReviewItem
from ..runstate import RunState

_NOT_GIVEN: Any = object()


class Backend(Protocol):
    """Everything the SDK asks of Proctor's core."""

    def decide(
        self,
        action: Action,
        run: RunState | None,
        params: dict[str, Any] | None,
        call: CallRef | None = None,
        waited_on: tuple[str, ...] = (),
    ) -> Verdict: ...

    def record_outcome(
        self,
        verdict: Verdict,
        action: Action,
        run: RunState | None,
        *,
        error: BaseException | None,
        duration: float,
        params: dict[str, Any] | None = None,
        item_id: str | None = None,
        result: Any = _NOT_GIVEN,
        claim_token: str | None = None,
        call: CallOutcome | None = None,
        healed: dict[str, Any] | None = None,
    ) -> str | None: ...

    def record_attempt(
        self,
        verdict: Verdict,
        action: Action,
        run: RunState | None,
        *,
        attempt: int,
        error: BaseException,
        detail: dict[str, Any] | None = None,
        call_id: str | None = None,
    ) -> str:
        """A failed try another follows; returns the tool's breaker state after it."""
        ...

    def escalate_failure(
        self,
        verdict: Verdict,
        action: Action,
        run: RunState | None,
        *,
        why: str,
        history: list[dict[str, Any]],
        params: dict[str, Any] | None = None,
        call_id: str | None = None,
    ) -> str:
        """An exception item for a person with the failure history; returns its id."""
        ...

    def record_refusal(
        self, action: Action, run: RunState | None, reason: str, rule_id: str
    ) -> Verdict: ...

    def open_choice(
        self,
        agent: str,
        offered: list[tuple[Action, dict[str, Any]]],
        run: RunState | None,
        queue: str | None,
        reason: str,
    ) -> Verdict: ...

    def end_run(self, run: RunState, error: BaseException | None) -> None: ...

    def claim(
        self, item_id: str, original_digest: str | None, owner: str | None, token: str
    ) -> ClaimAnswer:
        """Claim an approved item's grant with a token of the runner's own making."""
        ...

    def renew(self, item_id: str, token: str) -> bool:
        """Extend the lease of a held claim; False when it is no longer held."""
        ...

    def renew_call(self, call_id: str, token: str) -> bool:
        """Extend the lease of a claimed call; False when it is no longer held."""
        ...

    def settle_call(self, call_id: str, settlement: Settlement) -> CallState:
        """An unknown call's reconciliation: logged against the call's argument digest;
        committed closes it, not committed lets this caller run it once more (claimed
        with ``settlement.token``), anything else keeps it unknown and asks a person."""
        ...

    def unknown_calls(self, agent: str | None, tool: str, limit: int) -> list[UnknownCall]:
        """Unknown calls of ``tool`` (of ``agent``, or any), oldest first, for a scheduled
        reconciliation by the process that has the tool's lookup."""
        ...

    def escalate_call(self, call_id: str, why: str) -> str:
        """Put an unknown call in front of a person (a ``settle`` item, one per call)."""
        ...

    def lineage(self, run_id: str) -> list[str]:
        """A run and the runs it descends from, as recorded."""
        ...

    def sweep_item(self, item_id: str) -> None: ...

    def item(self, item_id: str) -> ReviewItem: ...

    def status(self, item_id: str) -> str: ...

    def wait_while(self, item_id: str, statuses: Iterable[str], timeout: float) -> str: ...

    def items(self, status: str | None, queue: str | None) -> list[ReviewItem]: ...

    def review(self, verb: str, item_id: str, by: str, **fields: Any) -> ReviewItem: ...

    def sweep(self) -> list[str]: ...

    def apply_policy(
        self, text: str, source: str, author: str | None, message: str | None
    ) -> str: ...

    def active_policy(self) -> CompiledPolicy | None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ClaimAnswer:
    state: str
    lease_seconds: float
    held_by: tuple[str, ...] = ()
    reason: str | None = None


# -- wire forms shared by the server and the remote client -----------------------------------


def verdict_to_wire(v: Verdict) -> dict[str, Any]:
    d = asdict(v.decision)
    d["rule_ids"] = list(v.decision.rule_ids)
    return {
        "decision": d,
        "id": v.id,
        "seq": v.seq,
        "item_id": v.item_id,
        "review_timeout": v.review_timeout,
        "on_timeout": v.on_timeout,
        "held_by": list(v.held_by),
        "call": call_to_wire(v.call) if v.call is not None else None,
        "healing": v.healing,
    }


def verdict_from_wire(data: dict[str, Any]) -> Verdict:
    d = dict(data["decision"])
    d["rule_ids"] = tuple(d["rule_ids"])
    call = data.get("call")
    return Verdict(
        Decision(**d),
        data["id"],
        data["seq"],
        data.get("item_id"),
        data["review_timeout"],
        data["on_timeout"],
        tuple(data.get("held_by") or ()),
        call_from_wire(call) if call else None,
        data.get("healing"),
    )


def call_to_wire(state: CallState) -> dict[str, Any]:
    wire = asdict(state)
    wire["seqs"] = list(state.seqs)
    return wire


def call_from_wire(data: dict[str, Any]) -> CallState:
    return CallState(**{**data, "seqs": tuple(data.get("seqs") or ())})


def item_to_wire(item: ReviewItem) -> dict[str, Any]:
    return asdict(item)


def item_from_wire(data: dict[str, Any]) -> ReviewItem:
    return ReviewItem(**data)
