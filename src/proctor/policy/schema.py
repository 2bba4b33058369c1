"""The policy document's schema (pydantic), with every error mapped to a line and column.

The YAML keys in DESIGN.md are the contract; additions are documented in docs/policy.md.
"""

from __future__ import annotations

import difflib
import itertools
import re
from collections.abc import Iterable
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
)

from .durations import parse_duration as parse_duration  # still importable from here
from .monitors import Monitor
from .monitors import problems as monitor_problems
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
    "breakers_open",
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


# The types a tool's parameter may declare: the names review/params.py gives a Python
# tool's annotations, so a declared envelope and a wrapped function speak alike.
ParamType = Literal["str", "int", "float", "bool", "list", "dict", "any"]
ToolName = Annotated[str, Field(pattern=_NAME)]
_TAG = "\x00"  # marks the union member pydantic names in an error's location


class Tool(_Model):
    """One tool of an envelope in the mapping form; ``params`` None: not declared."""

    params: dict[Annotated[str, Field(pattern=_NAME)], ParamType] | None = None


def _tools_form(value: object) -> str | None:
    if isinstance(value, list):
        return f"{_TAG}list"
    return f"{_TAG}map" if isinstance(value, dict) else None


# ``tools: [a, b]`` or ``tools: {a: {params: {amount: float}}, b: }``: the list form keeps
# its canonical form (and so its policy version) as it was before the mapping form existed.
Tools = Annotated[
    Annotated[list[ToolName], Tag(f"{_TAG}list")]
    | Annotated[dict[ToolName, Tool | None], Tag(f"{_TAG}map")],
    Discriminator(
        _tools_form,
        custom_error_type="tools_form",
        custom_error_message="a list of tool names, or a mapping of tool names to {params: ...}",
    ),
]


# Errors a retry policy may name without knowing the tool's own exceptions: failures that
# are, by their nature, worth another try (and, for the safety check, never committed).
TRANSIENT_ERRORS = (
    "ConnectionRefusedError",
    "ConnectionError",
    "TimeoutError",
    "ConnectError",
    "ReadTimeout",
    "ConnectTimeout",
    "RemoteProtocolError",
    "ServiceUnavailable",
    "RateLimited",
)


class Retry(_Model):
    """How often and when a failed call is tried again; every field has a bound."""

    attempts: int = Field(default=3, ge=1, le=20)  # tries in all, the first included
    backoff: Literal["exponential", "fixed"] = "exponential"
    base: float = Field(default=0.5, gt=0)  # seconds before the second try
    max: float = Field(default=30.0, gt=0)  # longest pause between tries
    jitter: float = Field(default=0.5, ge=0, le=1)  # share of each pause drawn at random
    on: list[Annotated[str, Field(pattern=_NAME)]] = list(TRANSIENT_ERRORS)
    deadline: float = Field(default=120.0, gt=0)  # no try starts after this many seconds
    idempotent: bool = False  # the tool deduplicates by its call's identity itself

    @field_validator("base", "max", "deadline", mode="before")
    @classmethod
    def _duration(cls, value: object) -> float:
        return parse_duration(value)


class Breaker(_Model):
    """A circuit breaker over a sliding window of the last ``window`` calls."""

    scope: Literal["agent_tool", "tool"] = "agent_tool"
    failure_rate: float = Field(default=0.5, gt=0, le=1)
    window: int = Field(default=100, ge=1, le=1000)
    min_calls: int = Field(default=100, ge=1, le=1000)
    open_for: float = Field(default=60.0, gt=0)
    trial_calls: int = Field(default=10, ge=1, le=1000)

    @field_validator("open_for", mode="before")
    @classmethod
    def _duration(cls, value: object) -> float:
        return parse_duration(value)


class Fallback(_Model):
    """Another tool to try when this one fails or its breaker is open."""

    tool: Annotated[str, Field(pattern=_NAME)]
    # fallback argument name -> CEL expression over the original call (args, context, tool)
    args: dict[Annotated[str, Field(pattern=_NAME)], str] | None = None


class Escalate(_Model):
    """Where persistent failure goes: an exception item for a person, and what the run does."""

    queue: str | None = None  # default: defaults.queue
    breaker_open_for: float | None = None  # an open breaker older than this reaches a person
    run: Literal["stop", "wait"] = "stop"

    @field_validator("breaker_open_for", mode="before")
    @classmethod
    def _duration(cls, value: object) -> float | None:
        return None if value is None else parse_duration(value)


class ToolHealing(_Model):
    """How calls of one tool heal: deadline, retries, breaker, fallback, escalation."""

    timeout: float | None = None
    retry: Retry | None = None
    breaker: Breaker | None = None
    fallback: Fallback | None = None
    escalate: Escalate | None = None

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, value: object) -> float | None:
        return None if value is None else parse_duration(value)


class Agent(_Model):
    oversight: Literal["high", "moderate", "light"] = "moderate"
    autonomy: int = Field(default=3, ge=1, le=4)
    owner: str | None = None
    version: str | None = None
    tools: Tools = []
    data: list[str] = []
    limits: dict[str, Limit] = {}

    def params(self, tool: str) -> dict[str, ParamType] | None:
        """The parameters ``tool`` declares in this envelope; None when it declares none."""
        spec = self.tools.get(tool) if isinstance(self.tools, dict) else None
        return None if spec is None else spec.params


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
    # what a rejection of this rule's review does to the rest of its run (and sub-runs):
    # refuse_dependents: the work that waited on it (the calls it held, approved items
    # opened before it was rejected) is refused with the reason; release: it goes ahead
    on_reject: Literal["refuse_dependents", "release"] = "refuse_dependents"


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


WEBHOOK_EVENTS = (
    "review.approved",
    "review.rejected",
    "review.edited",
    "review.chosen",
    "review.settled",
    "review.expired",
    "call.unknown",
)
WebhookEvent = Literal[WEBHOOK_EVENTS]  # type: ignore[valid-type]
_ENV_REF = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*\}$")
_HOOK_URL = re.compile(r"^(https?://|\$\{[A-Za-z_][A-Za-z0-9_]*\})\S+$")


class Webhook(_Model):
    """A URL told (a signed POST) when a person decides an item, an item expires or a
    call's outcome becomes unknown, so an orchestrator resumes without polling."""

    name: Annotated[str, Field(pattern=_NAME)]
    url: str
    secret: str
    events: list[WebhookEvent] = list(WEBHOOK_EVENTS)
    agents: list[str] = []  # only these agents' items and calls; empty: every agent
    queues: list[str] = []  # only items in these queues; empty: every queue

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not _HOOK_URL.match(value):
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: str) -> str:
        if not _ENV_REF.match(value):
            raise ValueError(
                "a webhook's secret names an environment variable, as '${VAR}':"
                " the secret itself never goes in the policy"
            )
        return value


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
    tools: dict[ToolName, ToolHealing] = {}
    tests: list[PolicyTest] = []
    webhooks: list[Webhook] = []
    monitors: list[Monitor] = []


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``; did you mean 'x'?`` for the closest choice, or nothing when none is close.

    difflib alone scores ``decision`` as near ``reason`` as ``decide``; of equally close
    choices, the one that starts like the word wins.
    """

    def score(choice: str) -> tuple[float, int]:
        ratio = difflib.SequenceMatcher(None, word, choice).ratio()
        same = (a == b for a, b in zip(word, choice, strict=False))
        return round(ratio, 2), sum(1 for _ in itertools.takewhile(bool, same))

    scored = [(score(c), c) for c in choices]
    close = [(s, c) for s, c in scored if s[0] >= 0.5]
    return f"; did you mean '{max(close)[1]}'?" if close else ""


def _message(err: Any) -> str:
    kind = err["type"]
    where = _clean(err["loc"])
    loc = ".".join(str(p) for p in where)
    if kind == "extra_forbidden":
        key = str(where[-1])
        return f"unknown key '{key}'" + did_you_mean(key, _keys_at(where[:-1]))
    if kind == "missing":
        return f"missing required key '{where[-1]}'"
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return f"{loc}: {msg}" if loc else msg


def _keys_at(path: tuple[str | int, ...]) -> list[str]:
    """The keys the schema allows in the mapping at ``path`` (for did-you-mean)."""
    node: Any = PolicyDocument
    for part in path:
        node = _step(node, part)
    found = _model(node)
    return list(found.model_fields) if found is not None else []


def _step(node: Any, part: str | int) -> Any:
    """The type found one step below ``node`` along ``part``."""
    model = _model(node)
    if model is not None:
        field = model.model_fields.get(str(part))
        return field.annotation if field is not None else None
    for option in _options(node):
        origin, args = get_origin(option), get_args(option)
        if origin is list and isinstance(part, int):
            return args[0]
        if origin is dict and isinstance(part, str):
            return args[1]
    return None


def _options(node: Any) -> list[Any]:
    """``node`` without Annotated and Optional wrappers: the types it may be."""
    if get_origin(node) is Annotated:
        return _options(get_args(node)[0])
    if get_origin(node) in (Union, UnionType):
        return [o for arg in get_args(node) for o in _options(arg)]
    return [node]


def _model(node: Any) -> type[BaseModel] | None:
    for option in _options(node):
        if isinstance(option, type) and issubclass(option, BaseModel):
            return option
    return None


def _clean(loc: tuple[Any, ...]) -> tuple[str | int, ...]:
    """A pydantic location as a path into the document: without the "[key]" markers it
    adds for dict keys that fail, nor the tags that name a union's member."""
    return tuple(p for p in loc if p != "[key]" and not (isinstance(p, str) and p[:1] == _TAG))


def validate(located: Located) -> PolicyDocument:
    """Validate the schema and the references between sections."""
    if not isinstance(located.data, dict):
        raise located.error((), "a policy must be a mapping with at least a 'policy' key")
    try:
        doc = PolicyDocument.model_validate(located.data)
    except ValidationError as exc:
        errors = exc.errors()
        # A misspelt key also leaves the right one missing from the same mapping: the
        # unknown key is the one to report, where it stands and with a suggestion.
        misspelt = {_clean(e["loc"])[:-1] for e in errors if e["type"] == "extra_forbidden"}
        errors = [
            e for e in errors if e["type"] != "missing" or _clean(e["loc"])[:-1] not in misspelt
        ]
        first = min(errors, key=lambda e: located.where(_path(e)))
        raise located.error(_path(first), _message(first)) from None
    _check_references(doc, located)
    return doc


def _path(err: Any) -> tuple[str | int, ...]:
    loc = _clean(err["loc"])
    if err["type"] == "extra_forbidden" or "[key]" in err["loc"]:
        return (*loc, KEY)  # the key itself is wrong: point at it, not at its value
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
    _check_healing(doc, located)
    _check_webhooks(doc, located)
    _check_monitors(doc, located)
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


def _check_healing(doc: PolicyDocument, located: Located) -> None:
    for name, heal in doc.tools.items():
        where = ("tools", name)
        if heal.fallback is not None and heal.fallback.tool == name:
            raise located.error((*where, "fallback", "tool"), "a tool cannot fall back to itself")
        if heal.retry is not None and heal.retry.max < heal.retry.base:
            raise located.error((*where, "retry", "max"), "retry.max is shorter than retry.base")
        if heal.breaker is not None and heal.breaker.min_calls > heal.breaker.window:
            raise located.error(
                (*where, "breaker", "min_calls"),
                f"min_calls ({heal.breaker.min_calls}) exceeds the window"
                f" ({heal.breaker.window}): the breaker could never open",
            )
        escalate = heal.escalate
        if escalate is not None:
            queue = escalate.queue or doc.defaults.queue
            if queue is None:
                raise located.error(
                    (*where, "escalate"), "escalate names no queue (set 'queue' or defaults.queue)"
                )
            if queue not in doc.queues:
                raise located.error((*where, "escalate", "queue"), f"unknown queue '{queue}'")


def _check_webhooks(doc: PolicyDocument, located: Located) -> None:
    seen: set[str] = set()
    for i, hook in enumerate(doc.webhooks):
        if hook.name in seen:
            raise located.error(("webhooks", i, "name"), f"duplicate webhook name '{hook.name}'")
        seen.add(hook.name)
        if not hook.events:
            raise located.error(("webhooks", i, "events"), "a webhook needs at least one event")
        for j, queue in enumerate(hook.queues):
            if queue not in doc.queues and queue != "default":
                raise located.error(("webhooks", i, "queues", j), f"unknown queue '{queue}'")


def _check_monitors(doc: PolicyDocument, located: Located) -> None:
    seen: set[str] = set()
    for i, monitor in enumerate(doc.monitors):
        if monitor.id in seen:
            raise located.error(("monitors", i, "id"), f"duplicate monitor id '{monitor.id}'")
        seen.add(monitor.id)
        if monitor.agent not in doc.agents:
            raise located.error(("monitors", i, "agent"), f"unknown agent '{monitor.agent}'")
        for path, message in monitor_problems(monitor, set(doc.notify)):
            where = tuple(int(p) if p.isdigit() else p for p in path)
            raise located.error(("monitors", i, *where), message)
