"""OpenTelemetry spans for runs, tool calls, gate decisions and review waits.

Off by default, and free when off: the SDK calls ``tracer`` and every hook starts with a
``None`` check. On when a ``tracer_provider`` is given to ``Proctor`` or the standard
``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set (then spans
go out over OTLP/HTTP, configured by the usual ``OTEL_*`` variables).

Names and attributes follow the OpenTelemetry GenAI semantic conventions
(``invoke_agent``, ``execute_tool``, ``gen_ai.*``, ``error.type``) plus ``proctor.*``.
The gate's decision is carried by the ``execute_tool`` span (``proctor.decision``,
``proctor.rule_ids``, ``proctor.policy_version``, ``gen_ai.tool.call.id``). One span per
call: an SDK span costs tens of microseconds on the calling thread (building spans on a
background thread was tried and is worse: it contends for the GIL). Review waits get
their own ``proctor.review_wait`` span, a child of the call's. Spans opened inside a tool
body nest under the run's span (the call's span is not made current, which saves more).
A run's trace id is the run's ``trace_id`` in the decision log, so an engineer can go from
a span to the decisions and back.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer, TracerProvider

    from ..gate import Verdict

SCOPE = "proctor"


def make_tracer(provider: TracerProvider | None) -> tuple[Tracer | None, Any]:
    """(tracer, the provider we created and must shut down), or (None, None) when off."""
    owned = None
    if provider is None:
        if not (
            os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
            or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        ):
            return None, None
        provider = owned = otlp_provider()
    from .. import __version__

    return provider.get_tracer(SCOPE, __version__), owned


def otlp_provider() -> TracerProvider:
    """An SDK provider exporting in batches over OTLP/HTTP, configured by OTEL_* variables."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider as SDKProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

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


def describe_decision(span: Span, verdict: Verdict) -> None:
    """The gate's decision on the tool call's span, in one call (one lock, one pass)."""
    d = verdict.decision
    attributes: dict[str, Any] = {"proctor.decision": d.decision, "proctor.rule_ids": d.rule_ids}
    if d.policy_version:
        attributes["proctor.policy_version"] = d.policy_version
    if verdict.id:
        attributes["gen_ai.tool.call.id"] = verdict.id
    if verdict.item_id:
        attributes["proctor.review_item_id"] = verdict.item_id
    if d.risk is not None:
        attributes["proctor.risk"] = d.risk
    span.set_attributes(attributes)


@contextmanager
def wait_span(tracer: Tracer, item_id: str, parent: Span) -> Iterator[Span]:
    from opentelemetry.trace import set_span_in_context

    with tracer.start_as_current_span(
        "proctor.review_wait",
        context=set_span_in_context(parent),
        attributes={"proctor.review_item_id": item_id},
    ) as span:
        yield span
