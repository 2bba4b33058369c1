"""``proctor bench heal``: what self-healing buys against a flaky service, and what it costs.

An agent pays ``n`` orders through a real payments service on loopback, in a process of
its own (``bench/flaky.py``: 503s, dropped connections before and after the charge, hung
answers, and a stretch of calls while it is down). Three modes, each on a fresh database:

- ``on``: the policy's ``tools:`` section heals ``pay``: a timeout, up to four tries when
  safe (a dropped or hung call is retried only after the lookup says nothing was charged),
  a breaker, the ``pay_later`` fallback (decided by the gate: large payments are never
  deferred) and escalation to a person when nothing else worked;
- ``off``: the same policy without ``tools:``: one try, the error raised;
- ``naive``: no healing in Proctor, but the agent's own blind loop: three tries, each with
  a new call id, as agent frameworks retry a failed tool call.

Completion counts calls that returned a result (charged or deferred); duplicate effects
come from the service's own ledger (a key charged twice, or charged and deferred).

``--gate`` measures instead what a closed breaker adds to an allowed call.
"""

from __future__ import annotations

import contextlib
import statistics
import subprocess
import sys
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import sqlalchemy as sa

from .._errors import Denied
from ..reconcile import Committed, NotCommitted
from ..sdk import Proctor
from ..store.tables import audit_log
from .gate import _actions, _database, _percentiles, synthetic_policy

AGENT = "payments-agent"
MODES = ("on", "off", "naive")
TOOL_TIMEOUT = 0.2  # the policy's timeout for one try of ``pay``
CLIENT_TIMEOUT = 0.3  # the tool's own HTTP client timeout (what bounds a try without healing)
HANG = 0.6  # how long a hung request keeps the caller waiting
ATTEMPTS = 4
NAIVE_TRIES = 3
NAIVE_PAUSE = 0.02
DOWN = (0.40, 0.55)  # the service is down for this share of the run's calls
DEFER_LIMIT = 400.0  # payments above this are never deferred: the fallback is refused

POLICY = f"""\
policy: bench-heal
defaults: {{decision: deny, queue: payments-ops}}
queues: {{payments-ops: {{roles: [ops]}}}}
agents:
  {AGENT}: {{tools: [pay, pay_later]}}
rules:
  - {{id: payments, when: 'tool in ["pay", "pay_later"]', decide: allow}}
  - id: no-large-deferral
    when: 'tool == "pay_later" && args.amount > {DEFER_LIMIT}'
    decide: deny
    reason: Payments over {DEFER_LIMIT:g} are never deferred without a person
"""

HEALING = f"""\
tools:
  pay:
    timeout: {TOOL_TIMEOUT}s
    retry:
      attempts: {ATTEMPTS}
      base: 20ms
      max: 100ms
      on: [ServiceUnavailable, ConnectError, RemoteProtocolError, TimeoutError]
    breaker: {{window: 20, min_calls: 10, failure_rate: 0.8, open_for: 0.5s, trial_calls: 2}}
    fallback: {{tool: pay_later, args: {{order_id: args.order_id, amount: args.amount}}}}
    escalate: {{run: stop, queue: payments-ops}}
"""


class ServiceUnavailable(Exception):
    """The service answered 503: it refused before doing anything, so a retry is safe."""


# what a failed payment raises, in every mode; anything else is a bug and propagates
FAILURES = (ServiceUnavailable, httpx.HTTPError, TimeoutError, Denied)


@dataclass
class Service:
    """The flaky service's process and its two addresses."""

    process: subprocess.Popen[str]
    api: str
    desk: str
    client: httpx.Client

    def control(self, what: str) -> None:
        self.client.post(f"{self.desk}/{what}").raise_for_status()

    def stats(self) -> dict[str, Any]:
        found: dict[str, Any] = self.client.get(f"{self.desk}/stats").json()
        return found


@contextlib.contextmanager
def flaky_service(seed: int, hang: float = HANG) -> Iterator[Service]:
    """The service in a process of its own, as a real one is: the agent's interpreter lock
    and its abandoned timed-out threads never slow the service down."""
    process = subprocess.Popen(
        [sys.executable, "-m", "proctor.bench.flaky", "--seed", str(seed), "--hang", str(hang)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdin is not None
    try:
        ports = orjson.loads(process.stdout.readline())
        with httpx.Client(timeout=5.0) as client:
            yield Service(
                process,
                f"http://127.0.0.1:{ports['api']}",
                f"http://127.0.0.1:{ports['desk']}",
                client,
            )
    finally:
        process.stdin.close()  # the service stops when its stdin closes
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


def _tools(px: Proctor, client: httpx.Client, service: Service) -> Callable[[str, float], str]:
    """The agent's tools: ``pay`` (with its lookup) and the ``pay_later`` fallback."""

    @px.tool(agent=AGENT, key="order_id", reversible=False)
    def pay(order_id: str, amount: float) -> str:
        """Charge an order; the service is told the order id, so its ledger can count."""
        r = client.post(f"{service.api}/pay", json={"key": order_id, "amount": amount})
        if r.status_code == 503:
            raise ServiceUnavailable(f"payments answered 503 for {order_id}")
        r.raise_for_status()
        return str(r.json()["receipt"])

    @pay.reconcile  # type: ignore[attr-defined, untyped-decorator]
    def charged(call: Any) -> Committed | NotCommitted:
        """Ask the service whether the order was charged: the call's effect, by its key."""
        r = client.get(f"{service.api}/effects/{call.args['order_id']}")
        r.raise_for_status()
        charges = r.json()["charges"]
        return Committed(charges[0]) if charges else NotCommitted()

    @px.tool(agent=AGENT, key="order_id")
    def pay_later(order_id: str, amount: float) -> str:
        """Queue the payment on the healthy desk, to be charged later."""
        r = client.post(f"{service.desk}/defer", json={"key": order_id, "amount": amount})
        r.raise_for_status()
        return str(r.json()["deferred"])

    return pay


def _naive(
    px: Proctor, pay: Callable[[str, float], str], tries: Counter[str]
) -> Callable[[str, float], str]:
    """The agent's own retry loop: a failed call is tried again under a new call id."""

    def call(order_id: str, amount: float) -> str:
        for attempt in range(1, NAIVE_TRIES + 1):
            try:
                with px.call_id(f"{order_id}#{attempt}"):
                    result = pay(order_id, amount)
            except FAILURES:
                if attempt == NAIVE_TRIES:
                    raise
                tries["retries"] += 1
                tries["max"] = max(tries["max"], attempt)
                time.sleep(NAIVE_PAUSE)
            else:
                tries["recovered"] += attempt > 1
                return result
        raise AssertionError("unreachable")

    return call


def _orders(n: int, seed: int) -> list[tuple[str, float]]:
    return [(f"ord-{seed}-{i:05d}", float(20 + (i * 37) % 480)) for i in range(n)]


def _run_mode(mode: str, n: int, seed: int, url: str, service: Service) -> dict[str, Any]:
    """One mode on its own database: the same orders, the service down for the same
    stretch of calls; counts from the agent, the service's ledger and the decision log."""
    service.control("reset")
    down_from, down_to = int(n * DOWN[0]), int(n * DOWN[1])
    samples = array("q")
    completed = Counter[str]()
    failed = Counter[str]()
    naive = Counter[str]()
    with (
        Proctor(url) as px,
        httpx.Client(timeout=httpx.Timeout(CLIENT_TIMEOUT)) as client,
    ):
        px.policy.apply(POLICY + (HEALING if mode == "on" else ""))
        pay = _tools(px, client, service)
        call = _naive(px, pay, naive) if mode == "naive" else pay
        start = time.perf_counter()
        for i, (order, amount) in enumerate(_orders(n, seed)):
            if i == down_from:
                service.control("down")
            elif i == down_to:
                service.control("up")
            t = time.perf_counter_ns()
            try:
                result = call(order, amount)
            except FAILURES as exc:
                failed[type(exc).__name__] += 1
            else:
                completed["fallback" if result.startswith("q-") else "primary"] += 1
            samples.append(time.perf_counter_ns() - t)
        wall = time.perf_counter() - start
        service.control("up")
        log = _from_log(px)
    stats = service.stats()
    if mode == "naive":  # the agent's own loop retried, not Proctor
        log = {
            **log,
            "retries": naive["retries"],
            "max_retries_per_call": naive["max"],
            "recovered_retry": naive["recovered"],
        }
    done = sum(completed.values())
    latency = _percentiles(samples)
    return {
        "calls": n,
        "completed": done,
        "completion_rate": round(done / n, 4),
        "by_primary": completed["primary"],
        "by_fallback": completed["fallback"],
        "failed": dict(sorted(failed.items())),
        "duplicate_effects": stats["duplicate_effects"],
        "duplicate_keys": stats["duplicate_keys"],
        "charges": stats["charges"],
        "deferred": stats["deferred"],
        "requests": stats["requests"],
        "fates": stats["fates"],
        "escalated": log["escalated"],
        "recovered_retry": log["recovered_retry"],
        "recovered_fallback": log["recovered_fallback"],
        "recovered_lookup": log["recovered_lookup"],
        "breaker_opened": log["breaker_opened"],
        "retries": log["retries"],
        "max_retries_per_call": log["max_retries_per_call"],
        "p50_ms": round(latency["p50_us"] / 1000, 2),
        "p95_ms": round(_pick(samples, 0.95) / 1e6, 2),
        "wall_s": round(wall, 2),
    }


def _pick(samples: array[int], q: float) -> float:
    s = sorted(samples)
    return float(s[min(len(s) - 1, int(len(s) * q))])


def _from_log(px: Proctor) -> dict[str, int]:
    """What the decision log says healing did (its records, not the bench's own counts)."""
    kinds = ("call.attempt", "heal.escalate", "breaker.open", "outcome")
    with px.store.read() as conn:
        rows = conn.execute(
            sa.select(audit_log.c.kind, audit_log.c.record).where(audit_log.c.kind.in_(kinds))
        ).all()
    count = Counter[str]()
    attempts = Counter[str]()
    for kind, text in rows:
        body = orjson.loads(text)
        count[kind] += 1
        if kind == "call.attempt":
            attempts[body["decision_id"]] += 1
        elif kind == "outcome" and body.get("outcome") == "ok":
            if body.get("recovered"):
                count[f"recovered_{body['recovered']}"] += 1
            if body.get("fallback_of"):
                count["recovered_fallback"] += 1
    return {
        "retries": count["call.attempt"],
        "max_retries_per_call": max(attempts.values(), default=0),
        "escalated": count["heal.escalate"],
        "breaker_opened": count["breaker.open"],
        "recovered_retry": count["recovered_retry"],
        "recovered_fallback": count["recovered_fallback"],
        "recovered_lookup": count["recovered_lookup"],
    }


def bench_heal(n: int, database: str | None = None, seed: int = 7) -> dict[str, Any]:
    modes: dict[str, dict[str, Any]] = {}
    with flaky_service(seed) as service:
        for mode in MODES:
            with _database(database) as url:
                modes[mode] = _run_mode(mode, n, seed, url, service)
    return {
        "bench": "heal",
        "n": n,
        "seed": seed,
        "backend": "sqlite" if database is None or database.startswith("sqlite") else "postgresql",
        "what": "n payments through a flaky service on loopback: healing on (policy tools:),"
        " off (one try) and naive (the agent's own blind retries, new call ids)",
        "service": {
            "fail_share": 0.30,
            "hang_share": 0.05,
            "down_calls": [int(n * DOWN[0]), int(n * DOWN[1])],
            "hang_s": HANG,
            "tool_timeout_s": TOOL_TIMEOUT,
            "client_timeout_s": CLIENT_TIMEOUT,
            "retry_attempts": ATTEMPTS,
        },
        "modes": modes,
    }


# -- what a closed breaker costs the allow path --------------------------------------------

BREAKER_SIDES = ("none", "breaker")
GATE_BREAKER = """\
tools:
  t3:
    breaker: {window: 100, min_calls: 100, open_for: 60s, trial_calls: 10}
"""


def bench_breaker(n: int, database: str | None = None, rules: int = 50) -> dict[str, Any]:
    """An allowed tool call (decision, body, outcome) whose tool has a closed breaker, vs
    the same call with none; blocks interleaved so drift hits both sides alike."""
    base = synthetic_policy(rules)
    with contextlib.ExitStack() as stack:
        proctors = {
            side: stack.enter_context(Proctor(stack.enter_context(_database(database))))
            for side in BREAKER_SIDES
        }
        calls = {}
        for side, px in proctors.items():
            px.policy.apply(base + (GATE_BREAKER if side == "breaker" else ""))

            @px.tool(agent="bench-agent", name="t3")
            def t3(order_id: str, amount: float) -> str:
                return order_id

            calls[side] = t3
        actions = _actions()
        block = max(100, n // 20)
        results = {side: array("q") for side in BREAKER_SIDES}
        ratios: list[float] = []
        for start in range(-2 * block, n, block):  # two warm-up blocks first
            blocks = {side: array("q") for side in BREAKER_SIDES}
            for side in BREAKER_SIDES if start // block % 2 else BREAKER_SIDES[::-1]:
                fn, timed = calls[side], blocks[side]
                for i in range(start, min(n, start + block)):
                    a = actions[i % len(actions)]
                    t = time.perf_counter_ns()
                    fn(**a.args)
                    timed.append(time.perf_counter_ns() - t)
            if start >= 0:
                for side in BREAKER_SIDES:
                    results[side].extend(blocks[side])
                ratios.append(
                    statistics.median(blocks["breaker"]) / statistics.median(blocks["none"])
                )
        with proctors["breaker"].store.read() as conn:
            state = conn.execute(sa.text("SELECT state FROM proctor_breakers")).scalar_one()
    none, breaker = _percentiles(results["none"]), _percentiles(results["breaker"])
    return {
        "bench": "heal-gate",
        "rules": rules,
        "n": n,
        "backend": "sqlite" if database is None or database.startswith("sqlite") else "postgresql",
        "what": "allowed tool call (decision + body + outcome), its tool's breaker closed vs none",
        "breaker_state": state,
        "none_p50_us": none["p50_us"],
        "none_p99_us": none["p99_us"],
        "breaker_p50_us": breaker["p50_us"],
        "breaker_p99_us": breaker["p99_us"],
        "overhead_p50_pct": round(100 * (breaker["p50_us"] / none["p50_us"] - 1), 1),
        "overhead_block_median_pct": round(100 * (statistics.median(ratios) - 1), 1),
        "budget_pct": 5.0,
    }


ROWS = (  # (key, label) in the table; JSON carries them all
    ("completion_rate", "completion rate"),
    ("by_primary", "completed by pay"),
    ("by_fallback", "completed by pay_later"),
    ("duplicate_effects", "duplicate side effects"),
    ("escalated", "escalated to a person"),
    ("recovered_retry", "recovered by retry"),
    ("recovered_fallback", "recovered by fallback"),
    ("recovered_lookup", "recovered by lookup"),
    ("breaker_opened", "breaker openings"),
    ("retries", "retries"),
    ("p50_ms", "p50 ms"),
    ("p95_ms", "p95 ms"),
    ("wall_s", "wall s"),
)


def table(data: dict[str, Any]) -> Any:
    """The modes side by side, for a terminal."""
    from rich.table import Table

    modes = data["modes"]
    out = Table(title=f"proctor bench heal: {data['n']} payments, {data['backend']}")
    out.add_column("")
    for mode in modes:
        out.add_column(f"healing {mode}" if mode != "naive" else "naive retries", justify="right")
    for key, label in ROWS:
        out.add_row(label, *(_cell(key, modes[m][key]) for m in modes))
    return out


def _cell(key: str, value: Any) -> str:
    return f"{value:.1%}" if key.endswith("_rate") else str(value)
