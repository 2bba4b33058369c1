"""Traces (in-memory and over real OTLP/HTTP on loopback) and Prometheus metrics."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from prometheus_client.parser import text_string_to_metric_families
from tests.asgi_client import AppClient

from proctor import Denied, Proctor, ReviewPending
from proctor.server.app import create_app
from proctor.telemetry.tracing import DirectTracer

POLICY = """
policy: telemetry
defaults: {decision: deny, queue: ops}
queues: {ops: {}, qa: {}}
agents: {bot: {tools: [lookup, refund, flaky], version: "2.1"}}
rules:
  - {id: ok, when: 'tool in ["lookup", "refund", "flaky"]', decide: allow}
  - {id: big, when: 'tool == "refund" && args.amount > 100.0', decide: review, hold_run: false}
  - {id: retry, when: 'tool == "flaky"', decide: allow, on_error: review}
"""


def workload(px: Proctor) -> dict[str, Any]:
    @px.tool(agent="bot")
    def lookup(order: str) -> str:
        return order

    @px.tool(agent="bot", wait=0)
    def refund(order: str, amount: float) -> str:
        return "ok"

    @px.tool(agent="bot")
    def flaky() -> None:
        raise TimeoutError("slow")

    @px.tool(agent="bot")
    def forbidden() -> None:
        raise AssertionError("never")

    out: dict[str, Any] = {}
    with px.run(agent="bot", ticket="T-1") as run:
        out["run"] = run
        lookup("A-1")
        lookup("A-2")
        refund("A-1", 20.0)
        with pytest.raises(ReviewPending) as info:
            refund("A-2", 500.0)
        out["item"] = info.value.item_id
        with pytest.raises(TimeoutError):
            flaky()
        with pytest.raises(Denied):
            forbidden()
    return out


class _Hooked(SimpleSpanProcessor):
    """A processor of the user's own: it sees spans start, so tool calls take the API path."""

    started: list[str] = []

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self.started.append(span.name)


@pytest.mark.parametrize("processor", [SimpleSpanProcessor, _Hooked])
def test_spans_follow_the_genai_conventions(db_url: str, processor: type[Any]) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(processor(exporter))
    _Hooked.started.clear()
    with Proctor(db_url, tracer_provider=provider) as px:
        direct = isinstance(px.tracer, DirectTracer)
        px.policy.apply(POLICY)
        done = workload(px)
        records = {r["tool"]: r for r in _decisions(px)}
    spans = exporter.get_finished_spans()
    by_name: dict[str, list[Any]] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    (run_span,) = by_name["invoke_agent bot"]
    assert run_span.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert run_span.attributes["gen_ai.agent.name"] == "bot"
    trace_id = format(run_span.context.trace_id, "032x")
    assert trace_id == done["run"].trace_id == records["lookup"]["trace_id"]
    tools = by_name["execute_tool lookup"]
    assert len(tools) == 2 and all(s.parent.span_id == run_span.context.span_id for s in tools)
    lookup = tools[0]
    assert lookup.attributes["gen_ai.tool.name"] == "lookup"
    assert lookup.attributes["proctor.decision"] == "allow"
    assert list(lookup.attributes["proctor.rule_ids"]) == ["ok"]
    assert len(lookup.attributes["proctor.policy_version"]) == 64
    assert lookup.attributes["gen_ai.tool.call.id"] in {r["id"] for r in _decisions_all(db_url)}
    pending = [
        s for s in by_name["execute_tool refund"] if s.attributes["proctor.decision"] == "review"
    ]
    assert pending[0].attributes["proctor.review_item_id"] == done["item"]
    assert pending[0].attributes["error.type"] == "ReviewPending"
    (flaky,) = by_name["execute_tool flaky"]
    assert flaky.attributes["error.type"] == "TimeoutError"
    assert flaky.status.status_code == StatusCode.ERROR and flaky.status.description == "slow"
    assert flaky.end_time > flaky.start_time > run_span.start_time
    assert by_name["execute_tool forbidden"][0].attributes["proctor.decision"] == "deny"
    calls = [s for s in spans if s.name.startswith("execute_tool ")]
    assert len(calls) == 6  # one per tool call, each carrying its gate decision
    assert all(s.attributes["proctor.decision"] in ("allow", "review", "deny") for s in calls)
    # the SDK's own processors get spans built in one step; anyone else's, the API path
    assert direct == (processor is SimpleSpanProcessor)
    assert _Hooked.started.count("execute_tool lookup") == (0 if direct else 2)


_DB: dict[str, str] = {}


def _decisions(px: Proctor) -> list[dict[str, Any]]:
    import json

    import sqlalchemy as sa

    from proctor.store.tables import audit_log

    _DB["url"] = px.database or ""
    with px.store.read() as conn:
        return [
            json.loads(r)
            for (r,) in conn.execute(
                sa.select(audit_log.c.record).where(audit_log.c.kind == "decision")
            )
        ]


def _decisions_all(url: str) -> list[dict[str, Any]]:
    with Proctor(url) as px:
        return _decisions(px)


class _Receiver(BaseHTTPRequestHandler):
    spans: list[Any] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        if self.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                type(self).spans.extend(scope.spans)
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    _Receiver.spans = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_spans_reach_a_real_otlp_receiver(
    sqlite_url: str, receiver: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "support-agents")
    with Proctor(sqlite_url) as px:
        assert px.tracer is not None
        px.policy.apply(POLICY)
        workload(px)
    # Proctor.close() flushed the batch to the receiver
    names = sorted({s.name for s in _Receiver.spans})
    assert "invoke_agent bot" in names and "execute_tool lookup" in names
    lookup = next(s for s in _Receiver.spans if s.name == "execute_tool lookup")
    attrs = {a.key: a.value for a in lookup.attributes}
    assert attrs["gen_ai.tool.name"].string_value == "lookup"
    assert attrs["proctor.decision"].string_value == "allow"


def test_tracing_is_off_by_default(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    with Proctor(sqlite_url) as px:
        assert px.tracer is None


def test_metrics_after_a_known_workload(db_url: str) -> None:
    with Proctor(db_url) as px:
        px.policy.apply(POLICY)
        done = workload(px)
        px.reviews.approve(done["item"], by="ana")
        client = AppClient(create_app(px, sweep=False))
        try:
            text = client.get("/metrics").text
            again = client.get("/metrics").text  # a second scrape counts nothing twice
        finally:
            client.close()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(again)
        for s in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    assert value("proctor_decisions_total", decision="allow", agent="bot", tool="lookup") == 2
    assert value("proctor_decisions_total", decision="allow", agent="bot", tool="refund") == 1
    assert value("proctor_decisions_total", decision="review", agent="bot", tool="refund") == 1
    assert value("proctor_decisions_total", decision="deny", agent="bot", tool="forbidden") == 1
    assert value("proctor_executions_total", agent="bot", tool="lookup", outcome="ok") == 2
    assert value("proctor_executions_total", agent="bot", tool="flaky", outcome="error") == 1
    assert value("proctor_review_time_to_decision_seconds_count", queue="ops") == 1
    assert value("proctor_review_queue_depth", queue="ops") == 1  # the flaky call's exception
    assert "proctor_gate_latency_seconds_bucket" in text
    assert text.count("proctor_decisions_total{") == again.count("proctor_decisions_total{")
