"""The policy document's schema (pydantic), with every error mapped to a line and column.

The YAML keys in DESIGN.md are the contract; additions are documented in docs/policy.md.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from .durations import parse_duration as parse_duration  # still importable from here
from .source import KEY, Located

DecisionName = Literal["allow", "deny", "review"]
_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.:\-]*$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False, frozen=True)


class Defaults(_Model):
    decision: DecisionName = "deny"
    review_timeout: float = 4 * 3600.0
    on_timeout: Literal["deny", "escalate"] = "deny"
    queue: str | None = None
    grant_ttl: float = 24 * 3600.0

    @field_validator("review_timeout", "grant_ttl", mode="before")
    @classmethod
    def _duration(cls, value: object) -> float:
        return parse_duration(value)


class Queue(_Model):
    roles: list[str] = []
    owners: list[str] = []  # notify targets told when an item breaches the SLA
    sla: float | None = None
    escalate_to: str | None = None
    quorum: int = Field(default=1, ge=1, le=20)
    review_timeout: float | None = None
    on_timeout: Literal["deny", "escalate"] | None = None

    @field_validator("sla", "review_timeout", mode="before")
    @classmethod
    def _duration(cls, value: object) -> float | None:
        return None if value is None else parse_duration(value)


class Limit(_Model):
    per_minute: int | None = Field(default=None, ge=0)
    per_hour: int | None = Field(default=None, ge=0)
    per_day: int | None = Field(default=None, ge=0)
    per_run: int | None = Field(default=None, ge=0)
    cost_per_day: float | None = Field(default=None, ge=0)
    on_exceed: Literal["deny", "review"] = "deny"


ALERT_METRICS = (
    "run_completion_rate",
    "retry_frequency",
    "failure_recovery_rate",
    "tool_success_rate",
    "escalation_rate",
    "deny_rate",
    "error_rate",
    "latency_p50_ms",
    "latency_p95_ms",
    "time_to_resolution_p50_s",
    "time_to_resolution_p95_s",
    "cost_per_completed_run",
    "cost",
    "silent_failures",
    "items_past_sla",
    "queue_depth",
    "decisions",
    "denials",
    "failures",
)
AlertMetric = Literal[ALERT_METRICS]  # type: ignore[valid-type]
Severity = Literal["critical", "warning", "info"]
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://\S+$")


class Alert(_Model):
    id: Annotated[str, Field(pattern=_NAME)]
    metric: AlertMetric
    above: float | None = None
    below: float | None = None
    window: float = 900.0
    severity: Severity = "warning"
    notify: list[str] = []
    agent: str | None = None
    tool: str | None = None
    queue: str | None = None
    min_events: int = Field(default=1, ge=1)
    description: str | None = None

    @field_validator("window", mode="before")
    @classmethod
    def _duration(cls, value: object) -> float:
        return parse_duration(value)


def _targets(value: object) -> list[str]:
    urls = [value] if isinstance(value, str) else value
    if not isinstance(urls, list) or not urls:
        raise ValueError("a notify target is a URL or a list of URLs")
    for url in urls:
        if not isinstance(url, str) or not _URL.match(url):
            raise ValueError(
                f"{url!r} is not a notification URL (e.g. 'slack://...', "
                "'mailto://...', 'json://host/path')"
            )
    return list(urls)


NotifyTarget = Annotated[list[str], BeforeValidator(_targets)]


class Agent(_Model):
    oversight: Literal["high", "moderate", "light"] = "moderate"
    autonomy: int = Field(default=3, ge=1, le=4)
    owner: str | None = None
    version: str | None = None
    tools: list[Annotated[str, Field(pattern=_NAME)]] = []
    data: list[str] = []
    limits: dict[str, Limit] = {}


class Rule(_Model):
    id: Annotated[str, Field(pattern=_NAME)]
    when: str = "true"
    decide: DecisionName
    queue: str | None = None
    reason: str | None = None
    on_error: Literal["review"] | None = None
    sample: float | None = Field(default=None, ge=0.0, le=1.0)
    tools: list[str] | None = None
    hold_run: bool = True


class TestAction(_Model):
    agent: str
    tool: str
    args: dict[str, Any] = {}
    context: dict[str, Any] = {}
    reversible: bool = True
    reads: list[str] = []


class PolicyTest(_Model):
    name: str | None = None
    action: TestAction
    expect: DecisionName
    rules: list[str] | None = None


class PolicyDocument(_Model):
    policy: Annotated[str, Field(pattern=_NAME)]
    description: str | None = None
    defaults: Defaults = Defaults()
    queues: dict[Annotated[str, Field(pattern=_NAME)], Queue] = {}
    agents: dict[Annotated[str, Field(pattern=_NAME)], Agent] = {}
    sensitive: list[str] = []
    risk: str | None = None
    rules: list[Rule] = []
    notify: dict[Annotated[str, Field(pattern=_NAME)], NotifyTarget] = {}
    alerts: list[Alert] = []
    tests: list[PolicyTest] = []


def _message(err: Any) -> str:
    kind = err["type"]
    loc = ".".join(str(p) for p in err["loc"])
    if kind == "extra_forbidden":
        return f"unknown key '{err['loc'][-1]}'"
    if kind == "missing":
        return f"missing required key '{err['loc'][-1]}'"
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return f"{loc}: {msg}" if loc else msg


def validate(located: Located) -> PolicyDocument:
    """Validate the schema and the references between sections."""
    if not isinstance(located.data, dict):
        raise located.error((), "a policy must be a mapping with at least a 'policy' key")
    try:
        doc = PolicyDocument.model_validate(located.data)
    except ValidationError as exc:
        errors = sorted(exc.errors(), key=lambda e: located.where(_path(e)))
        first = errors[0]
        raise located.error(_path(first), _message(first)) from None
    _check_references(doc, located)
    return doc


def _path(err: Any) -> tuple[str | int, ...]:
    loc = tuple(err["loc"])
    # pydantic appends "[key]" markers for dict keys that fail validation
    loc = tuple(p for p in loc if p != "[key]")
    if err["type"] == "extra_forbidden":
        return (*loc, KEY)
    return loc


def _check_references(doc: PolicyDocument, located: Located) -> None:
    for name, queue in doc.queues.items():
        if queue.escalate_to is not None and queue.escalate_to not in doc.queues:
            raise located.error(
                ("queues", name, "escalate_to"),
                f"escalate_to names unknown queue '{queue.escalate_to}'",
            )
    if doc.defaults.queue is not None and doc.defaults.queue not in doc.queues:
        raise located.error(("defaults", "queue"), f"unknown queue '{doc.defaults.queue}'")
    for agent_name, agent in doc.agents.items():
        for tool in agent.limits:
            if tool != "*" and tool not in agent.tools:
                raise located.error(
                    ("agents", agent_name, "limits", tool, KEY),
                    f"limit for tool '{tool}' that agent '{agent_name}' may not use",
                )
    seen: dict[str, int] = {}
    for i, rule in enumerate(doc.rules):
        if rule.id in seen:
            raise located.error(("rules", i, "id"), f"duplicate rule id '{rule.id}'")
        seen[rule.id] = i
        if rule.queue is not None and rule.queue not in doc.queues:
            raise located.error(("rules", i, "queue"), f"unknown queue '{rule.queue}'")
        if rule.decide != "allow" and (rule.on_error or rule.sample is not None):
            key = "on_error" if rule.on_error else "sample"
            raise located.error(
                (("rules", i, key)), f"'{key}' only applies to rules that decide allow"
            )
        needs_queue = rule.decide == "review" or rule.on_error or rule.sample
        if needs_queue and rule.queue is None and doc.defaults.queue is None:
            raise located.error(
                ("rules", i, "decide"),
                f"rule '{rule.id}' sends items for review but names no queue "
                "(set 'queue' or defaults.queue)",
            )
    _check_alerts(doc, located)
    for i, sensitive in enumerate(doc.sensitive):
        head = sensitive.split(".", 1)[0]
        if head not in ("args", "context") or "." not in sensitive:
            raise located.error(
                ("sensitive", i), "sensitive paths start with 'args.' or 'context.'"
            )
    for i, test in enumerate(doc.tests):
        for j, rule_id in enumerate(test.rules or []):
            if (
                rule_id not in seen
                and rule_id not in ("defaults",)
                and not rule_id.startswith("envelope")
            ):
                raise located.error(("tests", i, "rules", j), f"unknown rule id '{rule_id}'")


def _check_alerts(doc: PolicyDocument, located: Located) -> None:
    for name, queue in doc.queues.items():
        for j, target in enumerate(queue.owners):
            if target not in doc.notify:
                raise located.error(
                    ("queues", name, "owners", j), f"owners names unknown notify target '{target}'"
                )
    seen: set[str] = set()
    for i, alert in enumerate(doc.alerts):
        if alert.id in seen:
            raise located.error(("alerts", i, "id"), f"duplicate alert id '{alert.id}'")
        seen.add(alert.id)
        if (alert.above is None) == (alert.below is None):
            raise located.error(
                ("alerts", i, "metric"),
                f"alert '{alert.id}' needs exactly one threshold: 'above' or 'below'",
            )
        for j, target in enumerate(alert.notify):
            if target not in doc.notify:
                raise located.error(("alerts", i, "notify", j), f"unknown notify target '{target}'")
        if alert.queue is not None and alert.queue not in doc.queues:
            raise located.error(("alerts", i, "queue"), f"unknown queue '{alert.queue}'")
