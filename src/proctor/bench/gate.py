"""``proctor bench``: reproducible measurements that print JSON. Budgets live in DESIGN.md."""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from ..audit.verify import verify
from ..policy import Action, compile_policy, evaluate
from ..sdk import Proctor
from ..store import normalize_url

TOOLS = 10


def synthetic_policy(rules: int) -> str:
    """A policy shaped like real ones: most rules pin a tool, a fifth look at every action."""
    general = max(1, rules // 5)
    lines = [
        "policy: bench",
        "defaults: {decision: deny, queue: ops}",
        "queues: {ops: {roles: [ops]}}",
        "agents:",
        "  bench-agent:",
        f"    tools: [{', '.join(f't{i}' for i in range(TOOLS))}]",
        "    data: [orders]",
        'risk: "(has(args.amount) && args.amount > 500.0 ? 0.5 : 0.0)'
        ' + (action.reversible ? 0.0 : 0.3)"',
        "rules:",
        '  - {id: base, when: "true", decide: allow}',
    ]
    for i in range(rules - 1):
        if i < general - 1:
            lines.append(
                f"  - {{id: g{i}, when: 'has(context.confidence)"
                f" && context.confidence < 0.{i % 9 + 1}"
                f" && risk > 0.{i % 9}', decide: review}}"
            )
        else:
            tool = f"t{i % TOOLS}"
            lines.append(
                f'  - {{id: r{i}, when: \'tool == "{tool}" && args.amount > {1000 + i}.0'
                f' && context.region == "eu"\', decide: {"review" if i % 2 else "deny"}}}'
            )
    return "\n".join(lines) + "\n"


RUN_CONTEXT = {"confidence": 0.93, "region": "eu", "customer_tier": "gold"}


def _actions(count: int = 1000) -> list[Action]:
    """Arguments differ on every action, as they do in real traffic; the run context is shared."""
    return [
        Action(
            "bench-agent", "t3", {"order_id": f"A-{i:05d}", "amount": 20.0 + (i % 400)}, RUN_CONTEXT
        )
        for i in range(count)
    ]


def _action() -> Action:
    return _actions(1)[0]


def _cycling(actions: list[Action]) -> Callable[[], Action]:
    it = iter(range(1 << 62))
    return lambda: actions[next(it) % len(actions)]


def _percentiles(samples_ns: array[int]) -> dict[str, float]:
    s = sorted(samples_ns)

    def pick(q: float) -> float:
        return s[min(len(s) - 1, int(len(s) * q))] / 1000

    return {
        "p50_us": round(pick(0.50), 2),
        "p90_us": round(pick(0.90), 2),
        "p99_us": round(pick(0.99), 2),
        "max_us": round(s[-1] / 1000, 2),
        "mean_us": round(statistics.fmean(s) / 1000, 2),
    }


def _time(
    fn: Callable[[], Any], n: int, samples: array[int] | None = None
) -> tuple[array[int], float]:
    """Time ``n`` calls. Samples live in a flat int64 array (8 bytes each, allocated up
    front) so that the measurement itself does not show up as memory growth."""
    clock = time.perf_counter_ns
    if samples is None:
        samples = array("q", bytes(8 * n))
    start = clock()
    for i in range(n):
        t = clock()
        fn()
        samples[i] = clock() - t
    return samples, (clock() - start) / 1e9


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextmanager
def _database(url: str | None) -> Iterator[str]:
    """A fresh SQLite file, or a throwaway schema in the given PostgreSQL database."""
    if url is None or url.startswith("sqlite"):
        with tempfile.TemporaryDirectory(prefix="proctor-bench-") as tmp:
            yield url or f"sqlite:///{tmp}/bench.db"
        return
    schema = f"proctor_bench_{os.getpid()}_{os.urandom(3).hex()}"
    engine = sa.create_engine(normalize_url(url))
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in url else "?"
    try:
        yield f"{url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        engine.dispose()


def bench_policy(rules: int, n: int) -> dict[str, Any]:
    policy = compile_policy(synthetic_policy(rules), "bench")
    action = _action()
    nxt = _cycling(_actions())
    for _ in range(min(n, 2000)):
        evaluate(policy, nxt())
    samples, total = _time(lambda: evaluate(policy, nxt()), n)
    return {
        "bench": "policy",
        "rules": rules,
        "candidates": len(policy.candidates(action.tool)),
        "n": n,
        **_percentiles(samples),
        "per_s": round(n / total),
        "decision": evaluate(policy, action).decision,
        "backend": "none",
    }


def bench_gate(rules: int, database: str | None, n: int) -> dict[str, Any]:
    with _database(database) as url, Proctor(url) as px:
        px.policy.apply(synthetic_policy(rules))
        nxt = _cycling(_actions())
        gate = px.gate
        for _ in range(min(n, 2000)):
            gate.decide(nxt(), None)
        samples = array("q", bytes(8 * n))
        rss_before = _rss_mb()
        samples, total = _time(lambda: gate.decide(nxt(), None), n, samples)
        growth = _rss_mb() - rss_before  # before the percentiles: sorting allocates
        verdict = gate.decide(_action(), None)
        return {
            "bench": "gate",
            "rules": rules,
            "backend": px.store.dialect,
            "durability": px.store.durability,
            "n": n,
            **_percentiles(samples),
            "per_s": round(n / total),
            "decision": verdict.decision.decision,
            "rss_growth_mb": round(growth, 1),
        }


def bench_verify(records: int, database: str | None) -> dict[str, Any]:
    with _database(database) as url, Proctor(url) as px:
        px.policy.apply(synthetic_policy(50))
        action = _action()
        left = records - 1
        while left > 0:  # many records per transaction: this measures verify, not writes
            chunk = min(left, 5000)
            with px.store.write() as tx:
                for _ in range(chunk):
                    tx.append(
                        "decision",
                        {
                            "action": {"args": action.args, "context": action.context},
                            "rules": ["base"],
                            "reason": "bench",
                        },
                        agent=action.agent,
                        tool=action.tool,
                        decision="allow",
                    )
            left -= chunk
        start = time.perf_counter()
        result = verify(px.store)
        seconds = time.perf_counter() - start
        return {
            "bench": "verify",
            "backend": px.store.dialect,
            "records": result.checked,
            "ok": result.ok,
            "seconds": round(seconds, 3),
            "per_s": round(result.checked / seconds),
        }


_SINK = """
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class Sink(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def bench_trace(rules: int, n: int) -> dict[str, Any]:
    """A tool call (decision, body, outcome) with tracing off, and on and exporting over
    OTLP/HTTP to a receiver on loopback; blocks interleaved so drift hits both alike."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # the receiver runs in its own process, as a collector does: in this process it would
    # compete with the agent for the interpreter lock and be counted as tracing's cost
    sink = subprocess.Popen(
        [sys.executable, "-c", _SINK], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert sink.stdout is not None
    port = int(sink.stdout.readline())
    provider = TracerProvider()
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=f"http://127.0.0.1:{port}/v1/traces"))
    )
    policy = synthetic_policy(rules)
    results: dict[str, array[int]] = {"off": array("q"), "on": array("q")}
    with (
        tempfile.TemporaryDirectory(prefix="proctor-bench-") as tmp,
        Proctor(f"sqlite:///{tmp}/off.db") as off,
        Proctor(f"sqlite:///{tmp}/on.db", tracer_provider=provider) as on,
    ):
        calls = {}
        for name, px in (("off", off), ("on", on)):
            px.policy.apply(policy)

            @px.tool(agent="bench-agent", name="t3")
            def t3(order_id: str, amount: float) -> str:
                return order_id

            calls[name] = t3
        actions = _actions()
        block = max(100, n // 20)
        for _ in range(2):  # warm both
            for name in ("off", "on"):
                for a in actions[:block]:
                    calls[name](**a.args)
        for start in range(0, n, block):
            for name in ("off", "on"):
                fn = calls[name]
                for i in range(start, min(n, start + block)):
                    a = actions[i % len(actions)]
                    t = time.perf_counter_ns()
                    fn(**a.args)
                    results[name].append(time.perf_counter_ns() - t)
        provider.shutdown()
    sink.terminate()
    sink.wait()
    off_p, on_p = _percentiles(results["off"]), _percentiles(results["on"])
    return {
        "bench": "gate-trace",
        "rules": rules,
        "n": n,
        "backend": "sqlite",
        "what": "tool call: decision + body + outcome, 2 durable records",
        "off_p50_us": off_p["p50_us"],
        "off_p99_us": off_p["p99_us"],
        "on_p50_us": on_p["p50_us"],
        "on_p99_us": on_p["p99_us"],
        "p50_us": on_p["p50_us"],
        "p99_us": on_p["p99_us"],
        "per_s": round(1e6 / on_p["mean_us"]),
        "overhead_p50_pct": round(100 * (on_p["p50_us"] / off_p["p50_us"] - 1), 1),
    }
