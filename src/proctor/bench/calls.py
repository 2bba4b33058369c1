"""``proctor bench calls``: what a call identity costs on the allow path.

Two measurements, each in interleaved blocks on databases of their own:

- the gate's decision (``px.gate.decide``) without an identity and with one (a new
  identity each time: the call's row is looked up, then written with its claim);
- a whole tool call (decision, body, outcome: two durable records) without an identity,
  with one (``key=``), and without one inside a run (the hold check).
"""

from __future__ import annotations

import contextlib
import os
import time
from array import array
from typing import Any

from ..execution.calls import CallRef
from ..execution.leases import owner_id
from ..sdk import Proctor
from .gate import _actions, _database, _percentiles, synthetic_policy

DECIDE_SIDES = ("plain", "identity")
CALL_SIDES = ("plain", "identity", "in_run")


def bench_calls(rules: int, n: int, database: str | None = None) -> dict[str, Any]:
    policy = synthetic_policy(rules)
    with contextlib.ExitStack() as stack:
        urls = {
            side: stack.enter_context(_database(database))
            for side in ("d-plain", "d-identity", *CALL_SIDES)
        }
        proctors = {side: stack.enter_context(Proctor(url)) for side, url in urls.items()}
        for px in proctors.values():
            px.policy.apply(policy)
        decide = _decide(proctors["d-plain"], proctors["d-identity"], n)
        calls = _calls({side: proctors[side] for side in CALL_SIDES}, n)
    return {
        "bench": "calls",
        "rules": rules,
        "n": n,
        "backend": "sqlite" if database is None or database.startswith("sqlite") else "postgresql",
        "what": "gate decision, and a whole tool call (decision + body + outcome);"
        " a new identity each time",
        **{f"decide_{side}_p50_us": decide[side]["p50_us"] for side in DECIDE_SIDES},
        **{f"decide_{side}_p99_us": decide[side]["p99_us"] for side in DECIDE_SIDES},
        **{f"call_{side}_p50_us": calls[side]["p50_us"] for side in CALL_SIDES},
        **{f"call_{side}_p99_us": calls[side]["p99_us"] for side in CALL_SIDES},
        "p50_us": decide["identity"]["p50_us"],
        "p99_us": decide["identity"]["p99_us"],
        "decide_identity_overhead_p50_pct": _pct(decide["identity"], decide["plain"]),
        "call_identity_overhead_p50_pct": _pct(calls["identity"], calls["plain"]),
        "call_run_overhead_p50_pct": _pct(calls["in_run"], calls["plain"]),
    }


def _pct(side: dict[str, float], base: dict[str, float]) -> float:
    return round(100 * (side["p50_us"] / base["p50_us"] - 1), 1)


def _blocks(n: int) -> range:
    block = max(100, n // 20)
    return range(-2 * block, n, block)  # two warm-up blocks first


def _decide(plain: Proctor, identity: Proctor, n: int) -> dict[str, dict[str, float]]:
    actions = _actions()
    owner = owner_id()
    results = {side: array("q") for side in DECIDE_SIDES}
    gates = {"plain": plain.gate, "identity": identity.gate}
    serial = iter(range(1 << 62))
    block = max(100, n // 20)
    for start in _blocks(n):
        for side in DECIDE_SIDES:
            gate, timed = gates[side], results[side]
            for i in range(start, min(n, start + block)):
                a = actions[i % len(actions)]
                ref = (
                    CallRef(f"order_id={next(serial)}", os.urandom(16).hex(), owner)
                    if side == "identity"
                    else None
                )
                t = time.perf_counter_ns()
                gate.decide(a, None, None, ref)
                if i >= 0:
                    timed.append(time.perf_counter_ns() - t)
    return {side: _percentiles(results[side]) for side in DECIDE_SIDES}


def _calls(proctors: dict[str, Proctor], n: int) -> dict[str, dict[str, float]]:
    actions = _actions()
    results = {side: array("q") for side in CALL_SIDES}
    tools = {}
    for side, px in proctors.items():

        @px.tool(agent="bench-agent", name="t3", key="order_id" if side == "identity" else None)
        def t3(order_id: str, amount: float) -> str:
            return order_id

        tools[side] = t3
    serial = iter(range(1 << 62))  # every identity new: each call runs its body
    block = max(100, n // 20)
    with proctors["in_run"].run(agent="bench-agent"):
        for start in _blocks(n):
            for side in CALL_SIDES:
                fn, timed = tools[side], results[side]
                for i in range(start, min(n, start + block)):
                    a = actions[i % len(actions)]
                    order = f"{a.args['order_id']}-{next(serial)}"
                    t = time.perf_counter_ns()
                    fn(order, a.args["amount"])
                    if i >= 0:
                        timed.append(time.perf_counter_ns() - t)
    return {side: _percentiles(results[side]) for side in CALL_SIDES}
