"""The ``monitors:`` section: what drift to watch, against which reference, and the response.

A monitor watches one signal of one agent (optionally one tool) in the decision log:

- an argument or context field (``args.amount``, ``context.ticket_type``,
  ``context.confidence``): numeric, categorical or text;
- a rate (``decision.review``, ``decision.deny``, ``outcome.error``, ``review.approve``,
  ``review.reject``, ``review.edit``): each event counts 1 when it is that, else 0.

Its test compares a current window with a reference computed once and stored (or, with
``change_point``, the events just before a version change with those just after). Its
threshold is fitted for a stated false-alarm rate unless the policy fixes one.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .durations import parse_duration

_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.:\-]*$"

RATE_SIGNALS = (
    "decision.allow",
    "decision.review",
    "decision.deny",
    "outcome.error",
    "review.approve",
    "review.reject",
    "review.edit",
)
FIELD = re.compile(r"^(args|context)(\.[A-Za-z0-9_\-]+)+$")
Kind = Literal["numeric", "categorical", "text", "rate"]
Test = Literal["psi", "ks", "wasserstein", "js", "chi2", "length", "vocab", "cusum", "proportion"]
TESTS: dict[str, tuple[str, ...]] = {
    "numeric": ("psi", "ks", "wasserstein"),
    "categorical": ("js", "chi2"),
    "text": ("length", "vocab"),
    "rate": ("cusum", "proportion"),
}
DEFAULT_TEST = {"numeric": "psi", "categorical": "js", "text": "length", "rate": "cusum"}


class _Model(BaseModel):
    # as schema._Model (which imports this module): unknown keys are errors, values frozen
    model_config = ConfigDict(extra="forbid", strict=False, frozen=True)


class Reference(_Model):
    """The first ``events`` events (or the first ``period``) the monitor sees, optionally
    only those whose ``field`` (``policy`` or an ``args.``/``context.`` path) equals
    ``version``: computed once, stored, reused."""

    events: int = Field(default=2000, ge=40, le=20000)
    period: float | None = None
    version: str | None = None
    field: str = "policy"

    @field_validator("period", mode="before")
    @classmethod
    def _duration(cls, value: object) -> float | None:
        return None if value is None else parse_duration(value)


class OnDrift(_Model):
    """The response: ``autonomy`` -1 lowers the stage in force by one, 1..4 sets at most
    that stage (never raises it); ``notify`` names targets of the policy's ``notify:``."""

    autonomy: int | None = Field(default=None, ge=-3, le=4)
    notify: list[str] = []
    severity: Literal["critical", "warning", "info"] = "warning"


class Monitor(_Model):
    id: Annotated[str, Field(pattern=_NAME)]
    agent: Annotated[str, Field(pattern=_NAME)]
    tool: Annotated[str, Field(pattern=_NAME)] | None = None
    signal: str
    kind: Kind | None = None  # default: rate for a rate signal, else numeric
    test: Test | None = None  # default: psi, js, length or cusum by kind
    window: int = Field(default=500, ge=20, le=10000)  # events per comparison
    reference: Reference = Reference()
    false_alarm_rate: float = Field(default=0.01, gt=0, lt=0.5)
    threshold: float | None = Field(default=None, gt=0)  # fixed instead of calibrated
    shift: float = Field(default=0.5, gt=0, le=10)  # cusum: the relative rate change to catch
    change_point: str | None = None  # policy | args.X | context.X (a version field)
    on_drift: OnDrift = OnDrift()
    description: str | None = None

    @property
    def kind_(self) -> str:
        if self.kind is not None:
            return self.kind
        return "rate" if self.signal in RATE_SIGNALS else "numeric"

    @property
    def test_(self) -> str:
        if self.test is not None:
            return self.test
        if self.change_point is not None and self.kind_ == "rate":
            return "proportion"
        return DEFAULT_TEST[self.kind_]


def problems(monitor: Monitor, notify: set[str]) -> list[tuple[tuple[str, ...], str]]:
    """What is wrong with one monitor, as (path below it, message) pairs."""
    found: list[tuple[tuple[str, ...], str]] = []
    kind = monitor.kind_
    if monitor.signal in RATE_SIGNALS:
        if kind != "rate":
            found.append((("kind",), f"'{monitor.signal}' is a rate: kind is rate"))
    elif not FIELD.match(monitor.signal):
        found.append(
            (
                ("signal",),
                f"signal '{monitor.signal}' is neither an args./context. field nor one of "
                + ", ".join(RATE_SIGNALS),
            )
        )
    elif kind == "rate":
        found.append((("kind",), "a field is numeric, categorical or text; rates are signals"))
    if monitor.test is not None and monitor.test not in TESTS[kind]:
        found.append(
            (("test",), f"test '{monitor.test}' does not apply to {kind}: {', '.join(TESTS[kind])}")
        )
    if monitor.test_ == "proportion" and monitor.change_point is None:
        found.append((("test",), "the proportion test compares versions: set change_point"))
    cp = monitor.change_point
    if cp is not None and cp != "policy" and not FIELD.match(cp):
        found.append((("change_point",), "change_point is 'policy' or an args./context. field"))
    ref = monitor.reference
    if ref.field != "policy" and not FIELD.match(ref.field):
        found.append((("reference", "field"), "field is 'policy' or an args./context. field"))
    times = 4 if monitor.test_ == "vocab" else 2  # vocab: half builds the vocabulary
    if (
        monitor.change_point is None
        and monitor.test_ != "cusum"
        and ref.events < times * monitor.window
    ):
        found.append(
            (
                ("reference", "events"),
                f"the reference needs at least {times} times the window"
                f" ({times * monitor.window} events) to calibrate a threshold",
            )
        )
    for j, target in enumerate(monitor.on_drift.notify):
        if target not in notify:
            found.append((("on_drift", "notify", str(j)), f"unknown notify target '{target}'"))
    if monitor.on_drift.autonomy == 0:
        found.append((("on_drift", "autonomy"), "autonomy is -1..-3 (steps down) or a stage 1..4"))
    return found
