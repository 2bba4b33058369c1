"""OpenTelemetry spans for runs, tool calls, gate decisions and review waits.

Off by default, and free when off: the SDK calls ``tracer`` and every hook starts with a
``None`` check. On when a ``tracer_provider`` is given to ``Proctor`` or the standard
``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set (then spans
go out over OTLP/HTTP, configured by the usual ``OTEL_*`` variables).

Names and attributes follow the OpenTelemetry GenAI semantic conventions
(``invoke_agent``, ``execute_tool``, ``gen_ai.*``, ``error.type``) plus ``proctor.*``.
The gate's decision is carried by the ``execute_tool`` span (``proctor.decision``,
``proctor.rule_ids``, ``proctor.policy_version``, ``gen_ai.tool.call.id``). Review waits
get their own ``proctor.review_wait`` span, a child of the call's. Spans opened inside a
tool body nest under the run's span (the call's span is not made current, which saves
more).

Cost: an SDK ``Span`` costs 40-50 us per tool call in place (validating and locking each
attribute, sampling, processor hooks), about a third of the call. When the provider is
the SDK's with its default sampler and its own batch or simple processors, a tool call's
span is instead built once, finished, as the SDK's ``ReadableSpan`` and handed to those
processors (``DirectTracer``): the same span reaches the same exporters for about 3 us.
Any other provider, sampler or processor gets the ordinary API path.
A run's trace id is the run's ``trace_id`` in the decision log, so an engineer can go from
a span to the decisions and back.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .._extras import missing
from .._version import __version__

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer, TracerProvider

    from ..policy import Decision

SCOPE = "proctor"


def make_tracer(provider: TracerProvider | None) -> tuple[Any, Any]:
    """(tracer, the provider we created and must shut down), or (None, None) when off."""
    owned = None
    if provider is None:
        if not (
            os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
            or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        ):
            return None, None
        provider = owned = otlp_provider()
    tracer = provider.get_tracer(SCOPE, __version__)
    return DirectTracer.wrap(tracer, provider), owned


class DirectTracer:
    """The SDK's tracer for runs and review waits; tool-call spans built in one step."""

    def __init__(self, tracer: Tracer, processor: Any, resource: Any, scope: Any) -> None:
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.trace import INVALID_SPAN, SpanContext, TraceFlags, get_current_span
        from opentelemetry.trace.status import Status

        self._tracer = tracer
        self._on_end = processor.on_end
        self._resource = resource
        self._scope = scope
        # looked up once: a function-level import costs as much as a span attribute
        self._readable = ReadableSpan
        self._context = SpanContext
        self._current = get_current_span
        self._invalid = INVALID_SPAN
        self._sampled = TraceFlags(TraceFlags.SAMPLED)
        self._unset = Status()

    @classmethod
    def wrap(cls, tracer: Tracer, provider: Any) -> Any:
        """A DirectTracer where it sends exactly what the SDK would, else ``tracer``."""
        try:
            from opentelemetry.sdk.trace import TracerProvider as SDKProvider
            from opentelemetry.sdk.trace import sampling
            from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
            from opentelemetry.sdk.util.instrumentation import InstrumentationScope
        except ImportError:
            return tracer  # a provider of the API's alone (no SDK installed): the API path

        processor = getattr(provider, "_active_span_processor", None)
        processors = getattr(processor, "_span_processors", None)
        if (
            type(provider) is not SDKProvider
            or provider.sampler is not sampling.DEFAULT_ON
            or not processors
            or not all(type(p) in (BatchSpanProcessor, SimpleSpanProcessor) for p in processors)
        ):
            return tracer  # someone else's provider, sampler or processor: the API path
        scope = InstrumentationScope(SCOPE, __version__)
        return cls(tracer, processor, provider.resource, scope)

    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:
        return self._tracer.start_as_current_span(*args, **kwargs)

    def start_span(self, name: str, attributes: dict[str, Any], **_: Any) -> Any:
        parent: Any = self._current().get_span_context()
        if not parent.is_valid:
            parent, trace_id = None, _random_id(128)
        elif parent.trace_flags.sampled:
            trace_id = parent.trace_id
        else:
            return self._invalid  # the default sampler follows an unsampled parent
        context = self._context(trace_id, _random_id(64), False, self._sampled)
        return _DirectSpan(self, name, dict(attributes), context, parent)

    def finish(self, span: _DirectSpan) -> None:
        self._on_end(
            self._readable(
                name=span.name,
                context=span.context,
                parent=span.parent,
                resource=self._resource,
                attributes=span.attributes,
                status=span.status or self._unset,
                start_time=span.start,
                end_time=time.time_ns(),
                instrumentation_scope=self._scope,
            )
        )


class _DirectSpan:
    """The parts of a span a tool call sets, kept until it ends (one thread, no lock)."""

    __slots__ = ("_tracer", "attributes", "context", "name", "parent", "start", "status")

    def __init__(
        self, tracer: DirectTracer, name: str, attributes: dict[str, Any], context: Any, parent: Any
    ) -> None:
        self._tracer = tracer
        self.name = name
        self.attributes = attributes
        self.context = context
        self.parent = parent
        self.status: Any = None
        self.start = time.time_ns()

    def set_attributes(self, attributes: dict[str, Any]) -> None:
        self.attributes.update(attributes)

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value

    def set_status(self, status: Any) -> None:
        self.status = status

    def get_span_context(self) -> Any:
        return self.context

    def end(self) -> None:
        self._tracer.finish(self)


def _random_id(bits: int) -> int:
    value = random.getrandbits(bits)
    while not value:  # zero is the invalid id
        value = random.getrandbits(bits)
    return value


def otlp_provider() -> TracerProvider:
    """An SDK provider exporting in batches over OTLP/HTTP, configured by OTEL_* variables."""
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider as SDKProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise missing("otel", exc) from exc

    provider = SDKProvider(
        resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "proctor")})
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def trace_id_hex(span: Span) -> str:
    return format(span.get_span_context().trace_id, "032x")


@contextmanager
def run_span(tracer: Tracer, agent: str, run_id: str) -> Iterator[Span]:
    with tracer.start_as_current_span(
        f"invoke_agent {agent}",
        attributes={
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": agent,
            "gen_ai.agent.id": agent,
            "proctor.run_id": run_id,
        },
    ) as span:
        yield span


@contextmanager
def tool_span(tracer: Tracer, agent: str, tool: str) -> Iterator[Span]:
    """One span per tool call, carrying the gate's decision as attributes.

    Started without being made the current span: attaching a context costs more than the
    rest of a span on the hot path, and only a review wait (rare) needs it as a parent.
    """
    span = tracer.start_span(
        f"execute_tool {tool}",
        attributes={
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": tool,
            "gen_ai.agent.name": agent,
            "gen_ai.agent.id": agent,
        },
        record_exception=False,
        set_status_on_exception=False,
    )
    try:
        yield span
    except BaseException as exc:
        from opentelemetry.trace import Status, StatusCode

        span.set_attribute("error.type", type(exc).__name__)
        span.set_status(Status(StatusCode.ERROR, str(exc)[:200]))
        raise
    finally:
        span.end()


def describe_decision(
    span: Span, d: Decision, decision_id: str | None, item_id: str | None
) -> None:
    """The gate's decision on the tool call's span, in one call (one lock, one pass)."""
    attributes: dict[str, Any] = {
        "proctor.decision": d.decision,
        "proctor.rule_ids": tuple(d.rule_ids),
    }
    if d.policy_version:
        attributes["proctor.policy_version"] = d.policy_version
    if decision_id:
        attributes["gen_ai.tool.call.id"] = decision_id
    if item_id:
        attributes["proctor.review_item_id"] = item_id
    if d.risk is not None:
        attributes["proctor.risk"] = d.risk
    span.set_attributes(attributes)


@contextmanager
def wait_span(tracer: Tracer, item_id: str, parent: Span) -> Iterator[Span]:
    from opentelemetry.trace import NonRecordingSpan, set_span_in_context

    with tracer.start_as_current_span(
        "proctor.review_wait",
        context=set_span_in_context(NonRecordingSpan(parent.get_span_context())),
        attributes={"proctor.review_item_id": item_id},
    ) as span:
        yield span
