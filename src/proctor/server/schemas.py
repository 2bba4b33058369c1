"""Request bodies of /api/v1, validated by pydantic (errors name the field, status 422)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from .._values import problem

INT64_MAX = 2**63 - 1  # what the databases store; larger integers are refused with 422
Name = Field(min_length=1, max_length=200)
Id = Field(min_length=1, max_length=64)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any, info: ValidationInfo) -> Any:
        """Say as bad input what could not be stored or evaluated: text columns cannot hold
        NUL (PostgreSQL refuses it), and no field may hold a lone surrogate, a non-finite
        number or nesting deeper than ``_values.MAX_DEPTH`` (JSON and CEL cannot)."""
        if value is None or isinstance(value, BaseModel):
            return value  # a nested model checks its own fields
        texts = value if isinstance(value, list) else [value]
        if any(isinstance(t, str) and "\x00" in t for t in texts):
            raise ValueError("must not contain NUL (\\x00) characters")
        if isinstance(value, list) and any(isinstance(v, BaseModel) for v in value):
            return value
        found = problem(value, info.field_name or "value")
        if found is not None:
            raise ValueError(found)
        return value


class RunIn(_In):
    id: str = Id
    trace_id: str = Field(min_length=1, max_length=64)
    parent_id: str | None = Field(default=None, max_length=64)
    ancestors: list[str] = Field(default=[], max_length=32)
    agent: str = Name
    context: dict[str, Any] = {}
    started: bool = False
    history: list[dict[str, Any]] = Field(default=[], max_length=100)


class CallIn(_In):
    """A call's identity and the caller's claim on it."""

    key: str = Field(min_length=1, max_length=200)
    token: str = Field(min_length=16, max_length=128)
    owner: str = Field(default="", max_length=300)


class ActionIn(_In):
    agent: str = Name
    tool: str = Name
    args: dict[str, Any] = {}
    context: dict[str, Any] = {}
    reversible: bool = True
    reads: list[str] = Field(default=[], max_length=100)
    params: dict[str, Any] | None = None
    run: RunIn | None = None
    call: CallIn | None = None
    # review items this call waited on (it was held by them): their rejection refuses it
    waited_on: list[Annotated[str, Id]] = Field(default=[], max_length=50)
    idempotency_key: str | None = Field(default=None, min_length=8, max_length=128)


class DecisionWire(_In):
    decision: Literal["allow", "deny", "review"]
    rule_ids: list[str]
    reason: str
    policy_version: str | None
    risk: float | None = None
    queue: str | None = None
    on_error: bool = False
    sample: float = 0.0
    sample_queue: str | None = None
    error: str | None = None
    hold_run: bool = True
    refuse_dependents: bool = True


class VerdictWire(_In):
    decision: DecisionWire
    id: str | None
    seq: int | None = Field(ge=0, le=INT64_MAX)
    item_id: str | None = None
    review_timeout: float = 14400.0
    on_timeout: str = "deny"
    held_by: list[str] = Field(default=[], max_length=50)
    call: dict[str, Any] | None = None
    healing: dict[str, Any] | None = None


class CallOutcomeIn(_In):
    id: str = Id
    token: str = Field(min_length=16, max_length=128)
    ambiguous: bool = False
    has_lookup: bool = False


class HealedIn(_In):
    """How a call healed: its tries, what recovered it, the call it stood in for."""

    attempts: int = Field(default=1, ge=1, le=100)
    recovered: Literal["retry", "fallback", "lookup"] | None = None
    fallback_of: str | None = Field(default=None, max_length=64)


class OutcomeIn(_In):
    verdict: VerdictWire
    action: ActionIn
    error_type: str | None = Field(default=None, max_length=200)
    error: str | None = Field(default=None, max_length=2000)
    duration: float = Field(ge=0, le=366 * 86400)  # seconds; finite, at most a year
    item_id: str | None = Field(default=None, max_length=64)
    has_result: bool = False
    result: Any = None
    claim_token: str | None = Field(default=None, min_length=16, max_length=128)
    call: CallOutcomeIn | None = None
    idempotency_key: str | None = Field(default=None, min_length=8, max_length=128)
    healed: HealedIn | None = None


class AttemptIn(_In):
    """A failed try of an allowed call that another try follows."""

    verdict: VerdictWire
    action: ActionIn
    attempt: int = Field(ge=1, le=100)
    error_type: str = Field(max_length=200)
    error: str = Field(default="", max_length=2000)
    ambiguous: bool | None = None
    reconciled: Literal["committed", "not_committed", "conflicting", "unavailable"] | None = None
    call_id: str | None = Field(default=None, max_length=64)


class EscalationIn(_In):
    """Persistent failure handed to a person, with what was tried."""

    verdict: VerdictWire
    action: ActionIn
    why: str = Field(min_length=1, max_length=2000)
    history: list[dict[str, Any]] = Field(default=[], max_length=100)
    call_id: str | None = Field(default=None, max_length=64)


class SettlementIn(_In):
    answer: Literal["committed", "not_committed", "conflicting", "unavailable"]
    result: Any = None
    evidence: str | None = Field(default=None, max_length=2000)
    token: str | None = Field(default=None, min_length=16, max_length=128)
    owner: str | None = Field(default=None, max_length=300)


class EscalateCallIn(_In):
    why: str = Field(min_length=1, max_length=2000)


class SettleIn(_In):
    happened: bool
    note: str | None = Field(default=None, max_length=4000)


class RefusalIn(_In):
    action: ActionIn
    reason: str = Field(min_length=1, max_length=2000)
    rule_id: str = Name


class OptionIn(_In):
    tool: str = Name
    args: dict[str, Any] = {}
    probability: float | None = Field(default=None, ge=0.0, le=1.0)
    risks: list[str] = []
    reversible: bool = True
    reads: list[str] = []


class ChoiceIn(_In):
    agent: str = Name
    options: list[OptionIn] = Field(min_length=1, max_length=20)
    context: dict[str, Any] = {}
    run: RunIn | None = None
    queue: str | None = Field(default=None, max_length=200)
    reason: str = Field(default="the agent asks a human to choose", max_length=2000)


class RunEndIn(_In):
    run: RunIn
    error_type: str | None = Field(default=None, max_length=200)


class ClaimIn(_In):
    args_digest: str | None = Field(default=None, min_length=64, max_length=64)
    owner: str | None = Field(default=None, max_length=300)
    token: str = Field(min_length=16, max_length=128)  # the runner's own secret for this claim


class LeaseIn(_In):
    token: str = Field(min_length=16, max_length=128)


class ApproveIn(_In):
    note: str | None = Field(default=None, max_length=4000)
    confirm_not_run: bool = False  # needed to approve an item in doubt again


class NoteIn(_In):
    note: str | None = Field(default=None, max_length=4000)


class RejectIn(_In):
    reason: str = Field(min_length=1, max_length=4000)


class EditIn(_In):
    args: dict[str, Any] = Field(min_length=1)
    note: str | None = Field(default=None, max_length=4000)


class EscalateIn(_In):
    to: str = Name
    note: str | None = Field(default=None, max_length=4000)


class ChooseIn(_In):
    option: int = Field(ge=0, le=100)
    note: str | None = Field(default=None, max_length=4000)


class PolicyIn(_In):
    text: str = Field(min_length=1, max_length=1_000_000)
    message: str | None = Field(default=None, max_length=4000)


class TokenIn(_In):
    role: Literal["admin", "policy_author", "reviewer", "sme", "agent", "viewer"]
    name: str = Name
    queues: list[str] | None = Field(default=None, min_length=1, max_length=100)
    agents: list[str] | None = Field(default=None, min_length=1, max_length=100)
    # Seconds until it is refused; at most ten years (auth.MAX_EXPIRY_SECONDS).
    expires_in: float | None = Field(default=None, gt=0, le=10 * 366 * 86400)
