"""``proctor bench review``: how fast humans' decisions reach agents, and reviewer throughput."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from array import array
from typing import Any

from .._errors import ReviewPending
from ..sdk import Proctor
from .gate import _database, _percentiles

POLICY = """
policy: bench-review
defaults: {decision: deny, review_timeout: 1h, queue: ops}
queues: {ops: {roles: [ops]}}
agents: {bench-agent: {tools: [act]}}
rules: [{id: everything, when: 'true', decide: review}]
"""

# The agent: blocks on each call until approved; prints when each tool body starts.
AGENT = """
import sys, time
from proctor import Proctor
px = Proctor(sys.argv[1])
@px.tool(agent="bench-agent", wait=None)
def act(n: int) -> int:
    print(f"{n} {time.time()}", flush=True)
    return n
for n in range(int(sys.argv[2])):
    act(n)
"""


def _wakeups(url: str, px: Proctor, rounds: int) -> dict[str, Any]:
    agent = subprocess.Popen(
        [sys.executable, "-c", AGENT, url, str(rounds)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert agent.stdout is not None
    samples = array("q")
    try:
        for _ in range(rounds):
            item = None
            deadline = time.monotonic() + 30
            while item is None and time.monotonic() < deadline:
                items = px.reviews.list()
                item = items[0] if items else None
                if item is None:
                    time.sleep(0.002)
            if item is None:
                raise RuntimeError("the agent process opened no review item within 30s")
            px.reviews.approve(item.id, by="bench")
            returned = time.time()
            started = float(agent.stdout.readline().split()[1])
            samples.append(int((started - returned) * 1e9))
    finally:
        agent.wait(timeout=60)
    p = _percentiles(samples)
    return {
        "wakeup_p50_ms": round(p["p50_us"] / 1000, 2),
        "wakeup_p99_ms": round(p["p99_us"] / 1000, 2),
        "wakeup_max_ms": round(p["max_us"] / 1000, 2),
        "wakeup_rounds": rounds,
    }


def _throughput(px: Proctor, reviewers: int, items: int) -> float:
    @px.tool(agent="bench-agent", wait=0, name="act")
    def act(n: int) -> int:
        return n

    ids: list[str] = []
    for n in range(items):
        try:
            act(n)
        except ReviewPending as pending:
            ids.append(pending.item_id)
    lock = threading.Lock()

    def work(who: int) -> None:
        while True:
            with lock:
                if not ids:
                    return
                item_id = ids.pop()
            px.reviews.approve(item_id, by=f"reviewer-{who}")

    threads = [threading.Thread(target=work, args=(w,)) for w in range(reviewers)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return items / (time.perf_counter() - start)


def bench_review(database: str | None, rounds: int, items: int) -> dict[str, Any]:
    with _database(database) as url, Proctor(url) as px:
        px.policy.apply(POLICY)
        result: dict[str, Any] = {"bench": "review", "backend": px.store.dialect}
        result.update(_wakeups(url, px, rounds))
        for reviewers in (1, 4, 16):
            per_s = _throughput(px, reviewers, items)
            result[f"decisions_per_s_{reviewers}_reviewers"] = round(per_s)
        return result
