"""``proctor bench calls``: what a call identity costs a tool call on the allow path.

Tool calls (decision, body, outcome: two durable records) without an identity, with one
(``key=``: a repeat of a completed call returns its recorded result), and without one but
inside a run (the hold check), in interleaved blocks on their own SQLite databases.
"""

from __future__ import annotations

import tempfile
import time
from array import array
from typing import Any

from ..sdk import Proctor
from .gate import _actions, _percentiles, synthetic_policy

SIDES = ("plain", "identity", "in_run")


def bench_calls(rules: int, n: int) -> dict[str, Any]:
    policy = synthetic_policy(rules)
    results: dict[str, array[int]] = {side: array("q") for side in SIDES}
    actions = _actions()
    with tempfile.TemporaryDirectory(prefix="proctor-bench-") as tmp:
        proctors = {side: Proctor(f"sqlite:///{tmp}/{side}.db") for side in SIDES}
        calls = {}
        for side, px in proctors.items():
            px.policy.apply(policy)
            key = "order_id" if side == "identity" else None

            @px.tool(agent="bench-agent", name="t3", key=key)
            def t3(order_id: str, amount: float) -> str:
                return order_id

            calls[side] = t3
        runs = {side: proctors[side].run(agent="bench-agent") for side in SIDES}
        runs["in_run"].__enter__()
        try:
            block = max(100, n // 20)
            serial = iter(range(1 << 62))  # every identity new: each call runs its body
            for start in range(-2 * block, n, block):  # two warm-up blocks
                for side in SIDES:
                    fn, timed = calls[side], results[side]
                    for i in range(start, min(n, start + block)):
                        a = actions[i % len(actions)]
                        order = f"{a.args['order_id']}-{next(serial)}"
                        t = time.perf_counter_ns()
                        fn(order, a.args["amount"])
                        if i >= 0:
                            timed.append(time.perf_counter_ns() - t)
        finally:
            runs["in_run"].__exit__(None, None, None)
            for px in proctors.values():
                px.close()
    p = {side: _percentiles(results[side]) for side in SIDES}
    return {
        "bench": "calls",
        "rules": rules,
        "n": n,
        "backend": "sqlite",
        "what": "tool call: decision + body + outcome; new identities each time",
        **{f"{side}_p50_us": p[side]["p50_us"] for side in SIDES},
        **{f"{side}_p99_us": p[side]["p99_us"] for side in SIDES},
        "p50_us": p["identity"]["p50_us"],
        "p99_us": p["identity"]["p99_us"],
        "identity_overhead_p50_pct": round(
            100 * (p["identity"]["p50_us"] / p["plain"]["p50_us"] - 1), 1
        ),
        "run_overhead_p50_pct": round(100 * (p["in_run"]["p50_us"] / p["plain"]["p50_us"] - 1), 1),
    }
