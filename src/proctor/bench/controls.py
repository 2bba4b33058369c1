"""``proctor bench kill``: how fast a kill reaches an agent deciding in another process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from array import array
from typing import Any

from .. import controls
from ..sdk import Proctor
from .gate import _database, _percentiles

POLICY = """
policy: bench-kill
agents: {bench-agent: {tools: [act]}}
rules: [{id: ok, decide: allow}]
"""

# Decides continuously (a 0.2 ms pause between decisions: a busy agent, not a process that
# holds SQLite's single write lock every instant) and reports the moment its decisions flip
# between allow and deny.
AGENT = """
import sys, time
from proctor import Proctor
from proctor.policy import Action
px = Proctor(sys.argv[1])
gate = px.gate
action = Action("bench-agent", "act", {"n": 1})
allowed = None
while True:
    now_allowed = gate.decide(action, None).decision.decision == "allow"
    if now_allowed != allowed:
        allowed = now_allowed
        print(("allowed " if allowed else "denied ") + repr(time.time()), flush=True)
    time.sleep(0.0002)
"""


def bench_kill(database: str | None, rounds: int) -> dict[str, Any]:
    with _database(database) as url, Proctor(url) as px:
        px.policy.apply(POLICY)
        agent = subprocess.Popen(
            [sys.executable, "-c", AGENT, url],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert agent.stdout is not None
        samples: array[int] = array("q")
        try:
            if not agent.stdout.readline().startswith("allowed"):
                raise RuntimeError("the agent process did not start deciding")
            for _ in range(rounds):
                controls.kill(px.store, "bench-agent", "bench")
                acknowledged = time.time()
                line = agent.stdout.readline()
                if not line.startswith("denied"):
                    raise RuntimeError(f"unexpected report from the agent: {line!r}")
                samples.append(max(0, int((float(line.split()[1]) - acknowledged) * 1e9)))
                controls.revive(px.store, "bench-agent")
                if not agent.stdout.readline().startswith("allowed"):
                    raise RuntimeError("the agent did not resume after the revive")
                time.sleep(0.01)
        finally:
            agent.kill()
            agent.wait(timeout=10)
            agent.stdout.close()
        p = _percentiles(samples)
        return {
            "bench": "kill",
            "backend": px.store.dialect,
            "rounds": rounds,
            "propagation_p50_ms": round(p["p50_us"] / 1000, 3),
            "propagation_p99_ms": round(p["p99_us"] / 1000, 3),
            "propagation_max_ms": round(p["max_us"] / 1000, 3),
        }
